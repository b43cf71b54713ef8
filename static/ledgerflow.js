// Page behaviour, served from static/ so the Content-Security-Policy can
// forbid inline scripts and handlers.
"use strict";

// A form with data-confirm asks before it submits.
document.addEventListener("submit", (event) => {
  const form = event.target;
  // The button pressed may ask its own question (one form, several actions).
  const question = event.submitter?.dataset.confirm
    ?? (form instanceof HTMLFormElement ? form.dataset.confirm : undefined);
  if (question && !window.confirm(question)) {
    event.preventDefault();
    event.stopImmediatePropagation();
  }
}, true);

// A "select all" box ticks or clears every box of its group.
document.addEventListener("change", (event) => {
  const box = event.target;
  if (!(box instanceof HTMLInputElement) || !box.dataset.selectGroup) return;
  const group = box.dataset.selectGroup;
  for (const other of document.querySelectorAll(`input[data-group="${CSS.escape(group)}"]`)) {
    other.checked = box.checked;
  }
});

// A live update of the run page swaps in its live fragment and nothing else:
// a reply without it (the login page once the session has ended, a proxy's
// error page) leaves the page as it was instead of blanking it.
document.addEventListener("htmx:beforeSwap", (event) => {
  const { target, serverResponse } = event.detail;
  if (target?.id === "run-live" && !String(serverResponse ?? "").includes('id="run-live"')) {
    event.detail.shouldSwap = false;
  }
});
