// A live run's page in channels mode. The run's websocket only says "the run
// changed"; the page then asks for its live fragment over HTTP through htmx,
// the same request and swap the polling mode makes (#run-live, outerHTML,
// the diagram preserved), so both modes paint through one path.
//
// One fetch at a time: changes that arrive while one is under way are folded
// into one more fetch after it, so the last change is never lost and a burst
// of fifty commits costs two fetches, not fifty. On (re)connecting it
// fetches once, for whatever changed while it was not listening. A fragment
// without the socket's address (the run finished) closes the socket.
"use strict";

(function () {
  const CLOSED_FOR_GOOD = new Set([4403, 4404]); // not allowed; no such run
  const live = () => document.getElementById("run-live");
  let socket = null;
  let fetching = false;
  let again = false;
  let finished = false;
  let delay = 1000;

  function refresh() {
    if (finished) return;
    if (fetching) {
      again = true;
      return;
    }
    const url = live()?.dataset.liveUrl;
    if (!url) return stop();
    fetching = true;
    again = false;
    let failed = false;
    htmx
      .ajax("GET", url, { source: "#run-live", target: "#run-live", select: "#run-live", swap: "outerHTML" })
      .catch(() => {
        failed = again = true; // the server was not reached: try again shortly
      })
      .finally(() => {
        fetching = false;
        if (!live()?.dataset.liveSocket) return stop();
        if (again) setTimeout(refresh, failed ? 2000 : 0);
      });
  }

  function stop() {
    finished = true;
    if (socket) socket.close(1000);
  }

  function connect() {
    const path = live()?.dataset.liveSocket;
    if (!path || finished) return;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${location.host}${path}`);
    socket.onopen = () => {
      delay = 1000;
      refresh();
    };
    socket.onmessage = refresh;
    socket.onclose = (event) => {
      socket = null;
      if (finished || CLOSED_FOR_GOOD.has(event.code)) return;
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    };
  }

  connect();
})();
