"""HTTP request (httpx): method, URL, headers, query, JSON or form body; auth
from a credential; pagination by next link; the response checked against a
declared shape. Sends the step's ``Idempotency-Key``; classifies failures as
retryable or not. Every connection, including each redirect hop and page,
goes through ``connectors.outbound.netguard``."""

import base64
import email.utils
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any, Literal

import httpx
from pydantic import Field, model_validator

from connectors import base
from connectors.credentials.store import UsableCredential, credential_for
from connectors.outbound import allowed_hosts, drift, netguard
from runs.ground import clock

MAX_RESPONSE_BYTES = 1_000_000  # over every hop and page of one step
MAX_REDIRECTS = 5
RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}
# Answers by which the server says it did not process the request (it timed
# out reading it, it was too early, too many requests, it is unavailable):
# nothing was done, so even an unsafe step may retry them. 500, 502 and 504
# (and any other 5xx) may come after the remote acted: outcome unknown.
NOT_PROCESSED_STATUS = {408, 425, 429, 503}
# Transport failures that prove the request never left: no connection was
# made (refused, unreachable, timed out connecting, TLS handshake failed) or
# none could be had from the pool.
NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
AUTH_TYPES = {"bearer", "basic", "header_key", "hmac"}


class Pagination(base.StrictConfig):
    # Where the next page's URL is: a Link header (rel="next") or a JSON field.
    next_link: Literal["header", "json"] = "header"
    next_field: str = ""  # dotted path, e.g. "paging.next", when next_link is "json"
    items_field: str = ""  # dotted path to the page's list; "" when the body is the list
    max_pages: int = Field(default=10, ge=1, le=100)

    @model_validator(mode="after")
    def _next_field_for_json(self) -> "Pagination":
        if self.next_link == "json" and not self.next_field:
            raise ValueError("next_field is required when next_link is json")
        return self


class HttpConfig(base.StrictConfig):
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    query: dict[str, Any] = Field(default_factory=dict)
    json_body: Any = None
    form_body: dict[str, Any] | None = None
    # A credential's name (bearer, basic, header_key or hmac); never a secret.
    credential: str | None = None
    parse: Literal["auto", "json", "text"] = "auto"
    paginate: Pagination | None = None
    # A JSON Schema the response body should match; a mismatch is recorded as
    # drift on the flow, and the step still succeeds.
    expect_schema: dict | None = None
    # The whole call (every redirect hop and page) must finish within this.
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    # The remote deduplicates on Idempotency-Key, so a retry cannot repeat the
    # effect: the step may be re-run after a crash.
    honours_idempotency_key: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> "HttpConfig":
        if self.json_body is not None and self.form_body is not None:
            raise ValueError("give json_body or form_body, not both")
        if self.paginate is not None and self.method != "GET":
            raise ValueError("pagination follows next links with GET; use method GET")
        if self.expect_schema is not None:
            drift.check_schema(self.expect_schema)
        return self


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds or an HTTP date, or None."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def dig(document: Any, path: str) -> Any:
    """The value at a dotted path ("data.items", "pages.0.next"), or None."""
    for part in filter(None, path.split(".")):
        if isinstance(document, dict):
            document = document.get(part)
        elif isinstance(document, list) and part.isdigit() and int(part) < len(document):
            document = document[int(part)]
        else:
            return None
    return document


def auth_headers(credential: UsableCredential, body: bytes) -> dict[str, str]:
    fields, secrets = credential.fields, credential.secrets
    if credential.type == "bearer":
        return {"Authorization": f"Bearer {secrets['token']}"}
    if credential.type == "basic":
        pair = f"{fields['username']}:{secrets['password']}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode()}
    if credential.type == "header_key":
        return {fields["header_name"]: secrets["key"]}
    # hmac: the signature covers the timestamp and the exact body bytes, so
    # the receiver can refuse a replayed or altered request.
    stamp = str(int(clock.now().timestamp()))
    digest = hmac.new(secrets["secret"].encode(), stamp.encode() + b"." + body, hashlib.sha256)
    return {fields["timestamp_header"]: stamp, fields["header_name"]: digest.hexdigest()}


def _auth_header_names(credential: UsableCredential | None) -> set[str]:
    if credential is None:
        return set()
    return {name.lower() for name in auth_headers(credential, b"")}


@dataclass
class Call:
    """One step's traffic: a shared deadline and byte budget over all hops."""

    client: httpx.Client
    credential: UsableCredential | None
    origin: tuple[bytes, bytes, int | None]
    deadline: float
    received: int = 0
    # Hops the remote has answered: after the first, the step has reached it
    # (a 303 after a POST means it acted), so no later failure is "not sent".
    answered: int = 0

    def remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise base.ConnectorError(
                "timed out: the call took longer than its timeout", retryable=True
            )
        return left

    def _authorise(self, request: httpx.Request) -> None:
        for name in _auth_header_names(self.credential):
            request.headers.pop(name, None)
        # Credentials go only to the origin the flow named, and only if the
        # credential allows its host: a redirect or a next link elsewhere
        # gets none.
        if (
            self.credential is not None
            and _origin(request.url) == self.origin
            and allowed_hosts.allows(
                self.credential.allowed_hosts, request.url.host, effective_port(request.url)
            )
        ):
            request.headers.update(auth_headers(self.credential, request.read()))

    def fetch(self, request: httpx.Request) -> tuple[httpx.Response, bytes]:
        """Send, following redirects by hand: every hop is a new connection
        through the guard, and the hop count is ours to cap."""
        for _ in range(MAX_REDIRECTS + 1):
            self._authorise(request)
            request.extensions["timeout"] = httpx.Timeout(self.remaining()).as_dict()
            try:
                response = self.client.send(request, stream=True)
            except base.ConnectorError as exc:  # the outbound guard, or DNS
                exc.may_have_been_sent = exc.may_have_been_sent or self.answered > 0
                raise
            except httpx.TransportError as exc:
                raise self.transport_error(exc) from None
            self.answered += 1
            try:
                if response.next_request is not None:
                    request = response.next_request
                    continue
                return response, self._read(response)
            finally:
                response.close()
        raise base.ConnectorError(f"more than {MAX_REDIRECTS} redirects", retryable=False)

    def transport_error(self, exc: httpx.TransportError) -> base.ConnectorError:
        if isinstance(exc, httpx.UnsupportedProtocol):
            return base.ConnectorError(f"invalid URL: {exc}", retryable=False,
                                  may_have_been_sent=self.answered > 0)  # fmt: skip
        unsent = isinstance(exc, NOT_SENT_ERRORS) and self.answered == 0
        kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "connection failed"
        return base.ConnectorError(f"{kind}: {exc}", retryable=True, may_have_been_sent=not unsent)

    def _read(self, response: httpx.Response) -> bytes:
        chunks = []
        for chunk in response.iter_bytes():
            self.received += len(chunk)
            if self.received > MAX_RESPONSE_BYTES:
                raise base.ConnectorError(
                    f"response is larger than {MAX_RESPONSE_BYTES} bytes", retryable=False
                )
            self.remaining()
            chunks.append(chunk)
        return b"".join(chunks)


def _origin(url: httpx.URL) -> tuple[bytes, bytes, int | None]:
    return (url.raw_scheme, url.raw_host, url.port)


def effective_port(url: httpx.URL) -> int:
    return url.port or (443 if url.scheme == "https" else 80)


@base.register
class HttpRequest(base.Connector):
    key = "http.request"
    label = "HTTP request"
    category = "Network"
    icon = "globe"
    description = (
        "Call an HTTP endpoint with the step's Idempotency-Key; 5xx, 429 and timeouts retry, "
        "except that a POST whose remote ignores the key is never repeated once it may have "
        "been sent: a timeout or a 500, 502 or 504 leaves an outcome-unknown dead letter."
    )
    Config = HttpConfig
    example_config = {"method": "POST", "url": "https://api.example.com/orders",
                      "json_body": {"id": "{{ trigger.order_id }}"},
                      "honours_idempotency_key": True}  # fmt: skip
    # Per config: GET and HEAD read only; other methods are idempotent when
    # the remote honours the key, else unsafe.
    side_effect_class = base.SideEffect.UNSAFE
    output_schema = {"type": "object", "properties": {"status": {"type": "integer"}, "body": {}}}
    timeout_seconds = 120.0
    # Config fields that name a credential (the store holds the secrets).
    credential_fields = ("credential",)

    def side_effect(self, config: HttpConfig) -> base.SideEffect:
        if config.method in ("GET", "HEAD"):
            return base.SideEffect.NONE
        return (
            base.SideEffect.IDEMPOTENT if config.honours_idempotency_key else base.SideEffect.UNSAFE
        )

    def breaker_target(self, config: HttpConfig) -> str | None:
        return base.target_of(config.url, getattr(config, "credential", None))

    def execute(self, ctx: base.Context) -> base.Result:
        config: HttpConfig = ctx.config
        credential = (
            credential_for(config.credential, types=AUTH_TYPES) if config.credential else None
        )
        drifted: list[str] = []
        try:
            with netguard.guarded_client(config.timeout_seconds) as client:
                request = client.build_request(
                    config.method,
                    config.url,
                    headers={"Idempotency-Key": ctx.idempotency_key, **config.headers},
                    params=config.query or None,
                    json=config.json_body if config.method not in ("GET", "HEAD") else None,
                    data=config.form_body if config.method not in ("GET", "HEAD") else None,
                )
                if credential is not None:
                    # Refused before any connection: the URL (the graph's, or
                    # an edited replay input's) is not where the secret goes.
                    allowed_hosts.check(credential, request.url.host, effective_port(request.url))
                call = Call(
                    client=client,
                    credential=credential,
                    origin=_origin(request.url),
                    deadline=time.monotonic() + config.timeout_seconds,
                )
                if config.paginate is None:
                    output = self._single(call, request, config, drifted)
                else:
                    output = self._pages(call, request, config, drifted)
        # Failures while sending are classified by ``Call.fetch``; these come
        # later, reading an answer the remote had begun: it may have acted.
        except httpx.TimeoutException as exc:
            raise base.ConnectorError(f"timed out: {exc}", retryable=True) from None
        except httpx.InvalidURL as exc:
            raise base.not_sent(f"invalid URL: {exc}") from None
        except httpx.TransportError as exc:
            raise base.ConnectorError(f"connection failed: {exc}", retryable=True) from None
        if drifted:
            drift.record_drift(ctx, connector=self.key, message=drifted[0])
        return base.Result(output=output)

    def _single(self, call: Call, request, config: HttpConfig, drifted: list[str]) -> dict:
        response, body = call.fetch(request)
        self._raise_for_status(response, config)
        output = {"status": response.status_code, "body": self._parse(response, body, config)}
        self._check_shape(config, output["body"], drifted)
        return output

    def _pages(self, call: Call, request, config: HttpConfig, drifted: list[str]) -> dict:
        paging: Pagination = config.paginate
        items: list = []
        pages, next_url = 0, None
        while pages < paging.max_pages:
            response, body = call.fetch(request)
            pages += 1
            self._raise_for_status(response, config)
            document = self._parse(response, body, config)
            self._check_shape(config, document, drifted)
            found = dig(document, paging.items_field) if paging.items_field else document
            if not isinstance(found, list):
                where = paging.items_field or "the body"
                raise base.ConnectorError(f"page {pages}: {where} is not a list", retryable=False)
            items.extend(found)
            if paging.next_link == "header":
                next_url = response.links.get("next", {}).get("url")
            else:
                next_url = dig(document, paging.next_field)
            if not next_url or not isinstance(next_url, str):
                next_url = None
                break
            request = call.client.build_request(
                "GET",
                response.url.join(next_url),
                headers={"Idempotency-Key": request.headers["Idempotency-Key"], **config.headers},
            )
        return {
            "status": response.status_code,
            "items": items,
            "pages": pages,
            # More pages were offered than max_pages allows.
            "truncated": next_url is not None,
        }

    @staticmethod
    def _raise_for_status(response: httpx.Response, config: HttpConfig) -> None:
        status = response.status_code
        if status >= 400:
            raise base.ConnectorError(
                f"{config.method} {config.url} answered {status}",
                retryable=status in RETRYABLE_STATUS,
                retry_after=retry_after_seconds(response.headers.get("retry-after")),
                # A 4xx is the server refusing the request; a 5xx other than
                # 503 may come after it acted (a proxy timing out on it).
                may_have_been_sent=status >= 500 and status not in NOT_PROCESSED_STATUS,
            )

    @staticmethod
    def _check_shape(config: HttpConfig, document: Any, drifted: list[str]) -> None:
        if config.expect_schema is not None and not drifted:
            problem = drift.mismatch(config.expect_schema, document)
            if problem:
                drifted.append(problem)

    @staticmethod
    def _parse(response: httpx.Response, body: bytes, config: HttpConfig) -> Any:
        text = body.decode(response.encoding or "utf-8", errors="replace")
        wants_json = config.parse == "json" or (
            config.parse == "auto" and "json" in response.headers.get("content-type", "")
        )
        if wants_json:
            try:
                return json.loads(text)
            except ValueError:
                if config.parse == "json":
                    raise base.ConnectorError("the response is not JSON", retryable=False) from None
        return text
