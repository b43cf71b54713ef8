"""A fake CRM modelled on Salesforce's REST API: a real HTTP server on 127.0.0.1.

It speaks enough of that API for the CRM connector's tests and the demo:

- ``POST /services/oauth2/token`` (grant_type=client_credentials, form
  encoded): a bearer token and the instance URL. Tokens stay valid until
  ``/control`` says ``expire_tokens``; a request with an expired or unknown
  token answers 401 ``INVALID_SESSION_ID``.
- ``GET /services/data/vXX.X/query?q=SELECT a, b FROM Type [WHERE f > 'v']
  [ORDER BY f]``: at most ``page_size`` records per page, the rest behind
  ``nextRecordsUrl`` (``/services/data/vXX.X/query/<cursor>``).
- ``PATCH /services/data/vXX.X/sobjects/{type}/{field}/{value}``: upsert by
  external id, 201 created or 204 updated.
- ``POST /services/data/vXX.X/sobjects/{type}``: create (no deduplication).
- ``POST /services/data/vXX.X/composite/batch``: ``batchRequests`` run in
  order, each answered in ``results``.

It counts every write per external id (``Type/field/value``) and keeps what
each write carried, so ``GET /report`` shows a record written twice
(``duplicates``) and one rewritten with different content (``conflicts``).

``POST /control`` scripts failures: ``rate_limit_next`` (429 with
``Retry-After: retry_after``), ``fail_next`` with ``fail_status`` (answered
before acting), ``fail_after_write_next`` (acts, then answers 500: the
client cannot know it acted), ``expire_tokens``, ``page_size``, ``seed``
({type: [records]}, records of a type queryable by the tests and the demo),
``touch`` ({type, id, fields}: change a seeded record), ``latency``
(seconds each API request waits before it is handled), ``reset``.

    python -m fakeapi.crm --port 8766
"""

import argparse
import itertools
import json
import re
import secrets
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

CLIENT_ID = "ledgerflow-demo"
CLIENT_SECRET = "crm-demo-client-secret"
API = r"/services/data/v\d+\.\d+"
UPSERT = re.compile(rf"^{API}/sobjects/(\w+)/(\w+)/([^/]+)$")
CREATE = re.compile(rf"^{API}/sobjects/(\w+)/?$")
QUERY = re.compile(rf"^{API}/query/?$")
MORE = re.compile(rf"^{API}/query/([\w-]+)$")
BATCH = re.compile(rf"^{API}/composite/batch$")
SOQL = re.compile(
    r"^\s*SELECT\s+(?P<fields>.+?)\s+FROM\s+(?P<type>\w+)"
    r"(?:\s+WHERE\s+(?P<field>\w+)\s*(?P<op>>=|<=|!=|=|>|<)\s*(?P<value>'[^']*'|[\w.:+-]+))?"
    r"(?:\s+ORDER\s+BY\s+(?P<order>\w+)(?:\s+(?P<dir>ASC|DESC))?)?"
    r"(?:\s+LIMIT\s+(?P<limit>\d+))?\s*$",
    re.IGNORECASE,
)

# The demo's source records: customers changed at various times.
DEMO_CUSTOMERS = [
    {"Id": f"cus_{n}", "Email": f"customer{n}@example.com", "Name": name,
     "LastModifiedDate": f"2026-11-{20 + n:02d}T02:00:00Z"}
    for n, name in enumerate(["Ada Byron", "Grace Hopper", "Alan Kay", "Barbara Liskov",
                              "Edsger Dijkstra", "Frances Allen"], start=1)
]  # fmt: skip


def _compare(left, op: str, right) -> bool:
    if left is None:
        return False
    try:
        return {
            ">": left > right, ">=": left >= right, "<": left < right, "<=": left <= right,
            "=": left == right, "!=": left != right,
        }[op]  # fmt: skip
    except TypeError:
        return False


class CrmState:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.ids = itertools.count(1)
        self.tokens: dict[str, bool] = {}  # token -> still valid
        self.token_requests = 0
        self.unauthorised = 0
        self.requests = 0
        self.rate_limited = 0
        self.rate_limit_next = 0
        self.retry_after: float = 1
        self.fail_next = 0
        self.fail_status = 503
        self.fail_after_write_next = 0
        self.page_size = 2000
        self.queries = 0
        self.query_pages = 0
        self.cursors: dict[str, list[dict]] = {}
        # Seeded, queryable records per type (the demo's source data).
        self.source: dict[str, list[dict]] = {"Customer": [dict(c) for c in DEMO_CUSTOMERS]}
        # Records written through the API: "Type/field/value" or "Type/Id".
        self.records: dict[str, dict] = {}
        self.writes: dict[str, list[dict]] = {}  # key -> the content of each write
        self.creates: list[dict] = []
        self.batches = 0
        self.latency = 0.0

    def report(self) -> dict:
        def canonical(content: dict) -> str:
            return json.dumps(content, sort_keys=True)

        return {
            "requests": self.requests,
            "token_requests": self.token_requests,
            "unauthorised": self.unauthorised,
            "rate_limited": self.rate_limited,
            "queries": self.queries,
            "query_pages": self.query_pages,
            "batches": self.batches,
            "writes": {key: len(contents) for key, contents in self.writes.items()},
            "contents": self.writes,
            "creates": len(self.creates),
            "created": self.creates,
            "records": self.records,
            # Written more than once (the same content or not) ...
            "duplicates": sorted(k for k, c in self.writes.items() if len(c) > 1),
            # ... and rewritten with content that differs from an earlier write.
            "conflicts": sorted(
                k for k, c in self.writes.items() if len({canonical(x) for x in c}) > 1
            ),
        }

    # --- effects (under the lock) ---------------------------------------------

    def upsert(self, type_: str, field: str, value: str, body: dict) -> tuple[int, dict | None]:
        key = f"{type_}/{field}/{value}"
        self.writes.setdefault(key, []).append(body)
        record = self.records.get(key)
        if record is None:
            record = {"Id": f"003{next(self.ids):012d}", field: value}
            record.update(body)
            self.records[key] = record
            return 201, {"id": record["Id"], "success": True, "created": True, "errors": []}
        record.update(body)
        return 204, None

    def create(self, type_: str, body: dict) -> tuple[int, dict]:
        record_id = f"001{next(self.ids):012d}"
        self.records[f"{type_}/{record_id}"] = {"Id": record_id, **body}
        self.creates.append({"type": type_, "id": record_id, "content": body})
        return 201, {"id": record_id, "success": True, "errors": []}

    def query(self, soql: str) -> tuple[int, dict]:
        match = SOQL.match(soql or "")
        if match is None:
            return 400, [{"errorCode": "MALFORMED_QUERY", "message": f"cannot parse: {soql}"}]
        type_ = match["type"]
        rows = list(self.source.get(type_, []))
        rows += [r for k, r in self.records.items() if k.split("/", 1)[0] == type_]
        if match["field"]:
            value = match["value"]
            value = value[1:-1] if value.startswith("'") else value
            try:
                value = float(value) if not match["value"].startswith("'") else value
            except ValueError:
                pass
            rows = [r for r in rows if _compare(r.get(match["field"]), match["op"], value)]
        if match["order"]:
            rows.sort(key=lambda r: str(r.get(match["order"], "")),
                      reverse=(match["dir"] or "").upper() == "DESC")  # fmt: skip
        if match["limit"]:
            rows = rows[: int(match["limit"])]
        fields = [f.strip() for f in match["fields"].split(",")]
        picked = [{"attributes": {"type": type_}, **{f: r.get(f) for f in fields}} for r in rows]
        self.queries += 1
        return 200, self._page(picked, total=len(picked))

    def more(self, cursor: str) -> tuple[int, dict]:
        rows = self.cursors.pop(cursor, None)
        if rows is None:
            return 404, [{"errorCode": "INVALID_QUERY_LOCATOR", "message": "no such cursor"}]
        return 200, self._page(rows, total=None)

    def _page(self, rows: list[dict], total: int | None) -> dict:
        self.query_pages += 1
        page, rest = rows[: self.page_size], rows[self.page_size :]
        answer = {"totalSize": total if total is not None else len(rows), "done": not rest,
                  "records": page}  # fmt: skip
        if rest:
            cursor = f"01g{secrets.token_hex(6)}-{self.page_size}"
            self.cursors[cursor] = rest
            answer["nextRecordsUrl"] = f"/services/data/v59.0/query/{cursor}"
        return answer


class Handler(BaseHTTPRequestHandler):
    state: CrmState
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        pass

    def _raw(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body=None, headers: dict | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/report":
            with self.state.lock:
                return self._send(200, self.state.report())
        if url.path == "/health":
            return self._send(200, {"ok": True})
        return self._api("GET", url, b"")

    def do_POST(self):
        url = urlparse(self.path)
        raw = self._raw()
        state = self.state
        if url.path == "/control":
            return self._control(raw)
        if url.path == "/services/oauth2/token":
            form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
            with state.lock:
                state.token_requests += 1
                if form.get("grant_type") != "client_credentials":
                    return self._send(400, {"error": "unsupported_grant_type"})
                if (form.get("client_id"), form.get("client_secret")) != (
                    CLIENT_ID, CLIENT_SECRET,
                ):  # fmt: skip
                    refusal = "invalid client credentials"
                    return self._send(400, {"error": "invalid_client",
                                            "error_description": refusal})  # fmt: skip
                token = "00D" + secrets.token_urlsafe(24)
                state.tokens[token] = True
            host, port = self.server.server_address[:2]
            return self._send(200, {"access_token": token, "token_type": "Bearer",
                                    "instance_url": f"http://{host}:{port}",
                                    "issued_at": str(int(time.time() * 1000))})  # fmt: skip
        return self._api("POST", url, raw)

    def do_PATCH(self):
        url = urlparse(self.path)
        return self._api("PATCH", url, self._raw())

    def _control(self, raw: bytes) -> None:
        body = json.loads(raw or b"{}")
        state = self.state
        with state.lock:
            if body.get("reset"):
                state.reset()
            if body.get("expire_tokens"):
                state.tokens = dict.fromkeys(state.tokens, False)
            for name in ("rate_limit_next", "retry_after", "fail_next", "fail_status",
                         "fail_after_write_next", "page_size", "latency"):  # fmt: skip
                if name in body:
                    setattr(state, name, body[name])
            for type_, rows in (body.get("seed") or {}).items():
                state.source[type_] = [dict(r) for r in rows]
            touch = body.get("touch")
            if touch:
                for row in state.source.get(touch["type"], []):
                    if row.get("Id") == touch["id"]:
                        row.update(touch["fields"])
        return self._send(200, {"ok": True})

    def _api(self, method: str, url, raw: bytes) -> None:
        state = self.state
        if state.latency:
            time.sleep(state.latency)
        with state.lock:
            state.requests += 1
            auth = self.headers.get("Authorization", "")
            token = auth[7:] if auth.startswith("Bearer ") else ""
            if not state.tokens.get(token):
                state.unauthorised += 1
                return self._send(401, [{"message": "Session expired or invalid",
                                         "errorCode": "INVALID_SESSION_ID"}])  # fmt: skip
            if state.rate_limit_next > 0:
                state.rate_limit_next -= 1
                state.rate_limited += 1
                return self._send(429, [{"errorCode": "REQUEST_LIMIT_EXCEEDED",
                                         "message": "too many requests"}],
                                  {"Retry-After": str(state.retry_after)})  # fmt: skip
            if state.fail_next > 0:
                state.fail_next -= 1
                return self._send(state.fail_status, [{"errorCode": "SERVER_UNAVAILABLE",
                                                       "message": "injected failure"}])  # fmt: skip
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                return self._send(400, [{"errorCode": "JSON_PARSER_ERROR",
                                         "message": "body is not JSON"}])  # fmt: skip
            status, answer = self._route(method, url, body)
            if method != "GET" and status < 300 and state.fail_after_write_next > 0:
                state.fail_after_write_next -= 1
                status, answer = 500, [{"errorCode": "UNKNOWN_EXCEPTION",
                                        "message": "injected failure after the write"}]  # fmt: skip
        return self._send(status, answer)

    def _route(self, method: str, url, body) -> tuple[int, object]:
        state = self.state
        path = url.path
        if method == "GET" and QUERY.match(path):
            return state.query(parse_qs(url.query).get("q", [""])[0])
        if method == "GET" and MORE.match(path):
            return state.more(MORE.match(path).group(1))
        if method == "PATCH" and UPSERT.match(path):
            type_, field, value = UPSERT.match(path).groups()
            return state.upsert(type_, field, unquote(value), body)
        if method == "POST" and CREATE.match(path):
            return state.create(CREATE.match(path).group(1), body)
        if method == "POST" and BATCH.match(path):
            state.batches += 1
            results = []
            for sub in body.get("batchRequests") or []:
                sub_url = urlparse("/services/data/" + str(sub.get("url", "")).lstrip("/"))
                if not sub_url.path.startswith("/services/data/v"):
                    sub_url = urlparse(str(sub.get("url", "")))
                status, result = self._route(
                    str(sub.get("method", "GET")).upper(), sub_url, sub.get("richInput") or {}
                )
                results.append({"statusCode": status, "result": result})
            return 200, {"hasErrors": any(r["statusCode"] >= 400 for r in results),
                         "results": results}  # fmt: skip
        return 404, [{"errorCode": "NOT_FOUND", "message": f"{method} {path}"}]


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class CrmServer:
    """Runs the fake CRM in a thread; used by tests and the demo."""

    def __init__(self, port: int = 0):
        self.state = CrmState()
        handler = type("BoundHandler", (Handler,), {"state": self.state})
        self.httpd = QuietServer(("127.0.0.1", port), handler)
        self.address = self.httpd.server_address[:2]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}"

    def __enter__(self) -> "CrmServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def serve_forever(self) -> None:
        self.httpd.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8766)
    args = parser.parse_args()
    server = CrmServer(args.port)
    print(f"fake CRM on {server.url}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
