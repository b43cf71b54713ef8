"""A fake payments and inventory API: a real HTTP server on 127.0.0.1.

It charges and refunds, reserves and releases stock, honours
``Idempotency-Key`` (a repeated key returns the first answer and does
nothing), can be told to fail, be slow or be down (the payments and the
inventory part separately: ``fail_next``/``down`` and
``inventory_fail_next``/``inventory_down``), and reports effects per order
id: every charge it makes counts against its order (the business key),
whatever key it came with, so an order charged twice shows up as a
duplicate effect.

Modes for drills (``POST /control``):

- ``honour_keys: false``: a remote that ignores ``Idempotency-Key``; every
  request acts.
- ``late_fraction``/``late_next`` and ``late_seconds``: charge, then answer
  only after ``late_seconds`` (past the client's timeout): the charge is made
  and the client does not know it.
- ``refuse: {"up_seconds": u, "down_seconds": d, "every_charges": n}``: the
  listener closes for ``d`` seconds every ``u`` seconds, and also as soon as
  ``n`` more charges have been answered (optional), so connections are
  refused (nothing is listening); requests already accepted are answered.
  The charge count ties refusals to traffic: a burst of charges that fits in
  one up window still meets a closed port. ``refuse: null`` stops.

    python -m fakeapi.payments --port 8765
"""

import argparse
import itertools
import json
import random
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class PaymentsState:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.ids = itertools.count(1)
        self.by_key: dict[str, dict] = {}  # key -> {"done": Event, "response": (status, body)}
        self.charges: dict[str, dict] = {}
        self.refunds: dict[str, dict] = {}
        self.keys_per_order: dict[str, set[str]] = {}
        self.charges_per_order: dict[str, int] = {}
        self.honour_keys = True
        self.late_next = 0  # the next n charges answer late
        self.late_fraction = 0.0  # and this share of the others
        self.late_seconds = 0.0
        self.late_answers = 0
        self.refuse: dict | None = None
        self.charges_since_down = 0
        self.latency_ms = (0, 0)
        self.fail_next = 0
        self.fail_status = 503
        self.retry_after: float | None = None
        self.down = False
        self.requests = 0
        self.in_flight = 0
        self.reservations: dict[str, dict] = {}
        self.releases: dict[str, dict] = {}
        self.inventory_fail_next = 0
        self.inventory_fail_status = 503
        self.inventory_down = False
        self.inventory_requests = 0
        # Each effect's start and end (time.time()) with its body, in arrival
        # order: tests check which calls overlapped.
        self.timeline: list[dict] = []

    def report(self) -> dict:
        orders = {
            order: {"keys": sorted(keys), "charges": self.charges_per_order[order], "refunds": 0}
            for order, keys in self.keys_per_order.items()
        }
        for refund in self.refunds.values():
            orders[self.charges[refund["charge_id"]]["order_id"]]["refunds"] += 1
        stock: dict[str, dict] = {}
        for reservation in self.reservations.values():
            entry = stock.setdefault(reservation["order_id"], {"reservations": 0, "released": 0})
            entry["reservations"] += 1
            entry["released"] += reservation["released"]
        return {
            "orders": orders,
            "charges": len(self.charges),
            "refunds": len(self.refunds),
            "inventory": {
                "orders": stock,
                "reservations": len(self.reservations),
                "releases": len(self.releases),
                "requests": self.inventory_requests,
            },
            # Orders charged more than once, under one key or several.
            "duplicates": sorted(o for o, n in self.charges_per_order.items() if n > 1),
            "late_answers": self.late_answers,
            "requests": self.requests,
            "in_flight": self.in_flight,
            "timeline": self.timeline,
        }


class Handler(BaseHTTPRequestHandler):
    state: PaymentsState
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # quiet: tests and drills read reports instead
        pass

    def _body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        if not length:
            return {}
        try:
            return json.loads(self.rfile.read(length))
        except ValueError:
            return {"__invalid__": True}

    def _send(self, status: int, body: dict, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urlparse(self.path)
        state = self.state
        with state.lock:
            if url.path == "/report":
                return self._send(200, state.report())
            if url.path == "/health":
                return self._send(200, {"ok": True})
            if url.path == "/charges":
                order = parse_qs(url.query).get("order_id", [None])[0]
                found = [c for c in state.charges.values() if order in (None, c["order_id"])]
                return self._send(200, {"charges": found})
        return self._send(404, {"error": "not found"})

    def do_POST(self):
        url = urlparse(self.path)
        body = self._body()
        state = self.state
        if url.path == "/control":
            with state.lock:
                if body.get("reset"):
                    state.reset()
                if "latency_ms" in body:
                    state.latency_ms = tuple(body["latency_ms"])
                for name in ("fail_next", "fail_status", "retry_after", "down",
                             "inventory_fail_next", "inventory_fail_status",
                             "inventory_down", "honour_keys", "late_next", "late_fraction",
                             "late_seconds", "refuse"):  # fmt: skip
                    if name in body:
                        setattr(state, name, body[name])
            self._send(200, {"ok": True})
            if body.get("refuse"):
                self.server.flap(state)  # after answering: the listener may close
            return None
        inventory = url.path == "/reservations" or RELEASE.match(url.path) is not None
        if url.path not in ("/charges", "/refunds") and not inventory:
            return self._send(404, {"error": "not found"})
        prefix = "inventory_" if inventory else ""
        with state.lock:
            if inventory:
                state.inventory_requests += 1
            else:
                state.requests += 1
            if getattr(state, prefix + "down"):
                # Down: drop the connection without an answer, as a dead host would.
                self.close_connection = True
                self.connection.shutdown(2)
                return None
            if getattr(state, prefix + "fail_next") > 0:
                setattr(state, prefix + "fail_next", getattr(state, prefix + "fail_next") - 1)
                headers = {"Retry-After": str(state.retry_after)} if state.retry_after else {}
                status = getattr(state, prefix + "fail_status")
                return self._send(status, {"error": "injected failure"}, headers)
            latency = random.uniform(*state.latency_ms) / 1000 if state.latency_ms[1] else 0
        if body.get("__invalid__"):
            return self._send(400, {"error": "body is not JSON"})
        key = self.headers.get("Idempotency-Key")
        if not key:
            return self._send(400, {"error": "Idempotency-Key header is required"})
        if state.honour_keys:
            status, response = self._once(key, url.path, body, latency)
        else:  # every request acts, as at a remote that ignores the key
            status, response = self._once(key, url.path, body, latency, dedup=False)
        if url.path == "/charges" and status == 201 and self._answers_late():
            time.sleep(state.late_seconds)  # acted; the client gives up first
        self._send(status, response)
        if url.path == "/charges":
            self._count_towards_refusal()
        return None

    def _count_towards_refusal(self) -> None:
        state = self.state
        with state.lock:
            every = (state.refuse or {}).get("every_charges")
            state.charges_since_down += 1
            due = bool(every) and state.charges_since_down >= every
        if due:
            self.server.go_down_now()

    def _answers_late(self) -> bool:
        state = self.state
        with state.lock:
            late = state.late_next > 0 or random.random() < state.late_fraction
            if late and state.late_seconds > 0:
                state.late_next = max(0, state.late_next - 1)
                state.late_answers += 1
                return True
        return False

    def _once(
        self, key: str, path: str, body: dict, latency: float, dedup: bool = True
    ) -> tuple[int, dict]:
        """Perform the effect once per key; concurrent repeats wait for it.
        Without ``dedup`` every call performs it."""
        state = self.state
        with state.lock:
            entry = state.by_key.get(key) if dedup else None
            owner = entry is None
            if owner:
                entry = {"done": threading.Event(), "response": None}
                state.by_key[key] = entry
        if not owner:
            entry["done"].wait(timeout=60)
            status, response = entry["response"] or (409, {"error": "in progress"})
            return status, {**response, "replayed": True}
        with state.lock:
            state.in_flight += 1
            span = {"path": path, "body": body, "key": key, "start": time.time(), "end": None}
            state.timeline.append(span)
        try:
            time.sleep(latency)
        finally:
            with state.lock:
                state.in_flight -= 1
                span["end"] = time.time()
        with state.lock:
            if path == "/reservations" or RELEASE.match(path):
                result = self._inventory_effect(path, body, key)
            elif path == "/charges":
                order = str(body.get("order_id", ""))
                amount = body.get("amount")
                if not order or not isinstance(amount, int | float) or amount <= 0:
                    result = (422, {"error": "order_id and a positive amount are required"})
                else:
                    charge = {
                        "id": f"ch_{next(state.ids)}",
                        "order_id": order,
                        "amount": amount,
                        "key": key,
                        "at": time.time(),
                    }
                    state.charges[charge["id"]] = charge
                    state.keys_per_order.setdefault(order, set()).add(key)
                    state.charges_per_order[order] = state.charges_per_order.get(order, 0) + 1
                    result = (201, charge)
            else:
                charge = state.charges.get(str(body.get("charge_id", "")))
                if charge is None:
                    result = (404, {"error": "no such charge"})
                else:
                    refund = {"id": f"re_{next(state.ids)}", "charge_id": charge["id"], "key": key}
                    state.refunds[refund["id"]] = refund
                    result = (201, refund)
            entry["response"] = result
        entry["done"].set()
        return result

    def _inventory_effect(self, path: str, body: dict, key: str) -> tuple[int, dict]:
        state = self.state
        release = RELEASE.match(path)
        if release:
            reservation = state.reservations.get(release.group(1))
            if reservation is None:
                return 404, {"error": "no such reservation"}
            if not reservation["released"]:
                reservation["released"] = True
                state.releases[reservation["id"]] = {"key": key}
            return 200, reservation
        order, sku, quantity = body.get("order_id"), body.get("sku"), body.get("quantity", 1)
        if not order or not sku or not isinstance(quantity, int) or quantity <= 0:
            return 422, {"error": "order_id, sku and a positive quantity are required"}
        reservation = {"id": f"rs_{next(state.ids)}", "order_id": str(order), "sku": sku,
                       "quantity": quantity, "key": key, "released": False}  # fmt: skip
        state.reservations[reservation["id"]] = reservation
        return 201, reservation


RELEASE = re.compile(r"^/reservations/([\w-]+)/release$")


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    owner: "PaymentsServer | None" = None

    def flap(self, state: PaymentsState) -> None:
        if self.owner is not None:
            self.owner.start_flapping()

    def go_down_now(self) -> None:
        if self.owner is not None:
            self.owner.go_down.set()

    def handle_error(self, request, client_address):
        # Drills kill clients mid-request; a broken pipe is expected, not news.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class PaymentsServer:
    """Runs the API in a thread; used by tests and drills."""

    def __init__(self, port: int = 0):
        self.state = PaymentsState()
        self.handler = type("BoundHandler", (Handler,), {"state": self.state})
        self.httpd = self._listen(port)
        self.address = self.httpd.server_address[:2]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.flapper: threading.Thread | None = None
        self.closed = threading.Event()
        self.go_down = threading.Event()  # ends the current up window early

    def _listen(self, port: int) -> QuietServer:
        httpd = QuietServer(("127.0.0.1", port), self.handler)
        httpd.owner = self
        return httpd

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}"

    def __enter__(self) -> "PaymentsServer":
        self.thread.start()
        return self

    def serve_forever(self) -> None:
        self.thread.start()
        self.closed.wait()

    def __exit__(self, *exc) -> None:
        self.closed.set()
        self.go_down.set()
        if self.flapper is not None:
            self.flapper.join()
        self.httpd.shutdown()
        self.httpd.server_close()

    def start_flapping(self) -> None:
        if self.flapper is None or not self.flapper.is_alive():
            self.flapper = threading.Thread(target=self._flap, daemon=True)
            self.flapper.start()

    def _answer_backlog(self) -> None:
        """Serve the connections the kernel already accepted: closing the
        listener would reset them after their request was sent, which is a
        lost answer (outcome unknown), not a refused connection."""
        self.httpd.socket.setblocking(False)
        while True:
            try:
                request, address = self.httpd.get_request()
            except OSError:  # BlockingIOError: nothing more is waiting
                return
            request.setblocking(True)
            self.httpd.process_request(request, address)

    def _flap(self) -> None:
        """While ``state.refuse`` is set: serve ``up_seconds`` (or until
        ``every_charges`` charges were answered), then close the listening
        socket for ``down_seconds`` (connections are refused: nothing
        listens), then listen on the same port again."""
        while not self.closed.is_set():
            refuse = self.state.refuse
            if not refuse:
                return
            self.go_down.wait(float(refuse.get("up_seconds", 1)))
            if self.closed.is_set() or self.state.refuse is None:
                return  # switched off during the up window: stay listening
            self.httpd.shutdown()
            self._answer_backlog()
            self.httpd.server_close()
            self.closed.wait(float(refuse.get("down_seconds", 1)))
            self.httpd = self._listen(self.address[1])
            self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
            self.thread.start()
            with self.state.lock:  # a full up window (or n charges) before the next
                self.state.charges_since_down = 0
            self.go_down.clear()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    server = PaymentsServer(args.port)
    print(f"fake payments API on {server.url}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
