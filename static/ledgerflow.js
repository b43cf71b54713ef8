// Page behaviour, served from static/ so the Content-Security-Policy can
// forbid inline scripts and handlers.
"use strict";

// A form with data-confirm asks before it submits.
document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form instanceof HTMLFormElement ? form.dataset.confirm : undefined;
  if (question && !window.confirm(question)) {
    event.preventDefault();
    event.stopImmediatePropagation();
  }
}, true);
