// Approvals in channels mode: the socket only says "changed"; the inbox and
// badge listen for "approvals-changed" on <body> and re-fetch over HTTP.
"use strict";

(function connect(delay) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/ws/approvals/`);
  socket.onmessage = () => document.body.dispatchEvent(new Event("approvals-changed"));
  socket.onclose = (event) => {
    // 4403: not allowed (logged out or no role); retrying would not help.
    if (event.code !== 4403) setTimeout(() => connect(Math.min(delay * 2, 30000)), delay);
  };
})(1000);
