"""CRM (a Salesforce-style REST API): query, upsert by external id, create,
composite batch.

Authentication is OAuth2 client credentials from a ``crm_oauth`` credential:
the token is cached per credential in the process and fetched again once
when the API answers 401 (an expired session). Every connection goes
through ``connectors.outbound.netguard``, and only to the hosts the
credential allows (its token URL's and its instance URL's).

What a re-run may do, per operation:

- ``query`` reads only; it follows ``nextRecordsUrl`` up to ``max_records``.
- ``upsert`` (``PATCH /sobjects/{type}/{field}/{value}``) is idempotent by
  nature: the same write twice leaves the same record.
- ``create`` (``POST /sobjects/{type}``) is unsafe: the API has no
  idempotency key, so a create that may have been sent is never repeated.
  With ``dedup_field`` the flow declares an external-id field: the step
  writes its idempotency key there and upserts on it, so a repeat finds the
  record it made instead of making a second one (idempotent).
- ``batch`` (``POST /composite/batch``) is idempotent when every
  sub-request reads or PATCHes (an upsert or an update), else unsafe.

A 429 or 503 is the API saying it did not process the request: retryable,
``retry_after`` from its Retry-After, and not sent.
"""

import re
import threading
import time
from typing import Any, Literal
from urllib.parse import quote

import httpx
from pydantic import Field, model_validator

from connectors import base
from connectors.credentials.store import UsableCredential, credential_for
from connectors.nodes.http_request import NOT_SENT_ERRORS, effective_port, retry_after_seconds
from connectors.outbound import allowed_hosts, netguard

NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
MAX_RECORDS = 10_000
MAX_BATCH = 25  # Salesforce's limit for one composite batch
# The API answered that it did not process the request.
NOT_PROCESSED_STATUS = {408, 425, 429, 503}
RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}

# Access tokens per credential (name, token URL, client id, secret), in this
# process: {key: token}. A 401 drops the token it was given with.
_tokens: dict[tuple[str, str, str, str], str] = {}
_tokens_lock = threading.Lock()


def forget_tokens() -> None:
    with _tokens_lock:
        _tokens.clear()


class BatchRequest(base.StrictConfig):
    method: Literal["GET", "PATCH", "POST", "DELETE"]
    # Relative to /services/data/, e.g. "v59.0/sobjects/Contact/Email__c/a@b.c".
    url: str = Field(min_length=1)
    rich_input: dict | None = None


class CrmConfig(base.StrictConfig):
    # A crm_oauth credential's name; never a secret.
    credential: str = Field(min_length=1)
    operation: Literal["query", "upsert", "create", "batch"]
    api_version: str = Field(default="59.0", pattern=r"^\d{1,3}\.\d$")
    # query
    soql: str = ""
    max_records: int = Field(default=2000, ge=1, le=MAX_RECORDS)
    # upsert and create
    object_type: str = ""
    external_id_field: str = ""
    external_id: Any = None
    fields: dict[str, Any] = Field(default_factory=dict)
    # create: an external-id field the flow declares for deduplication.
    dedup_field: str = ""
    # batch
    requests: list[BatchRequest] = Field(default_factory=list, max_length=MAX_BATCH)
    halt_on_error: bool = False
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)

    @model_validator(mode="after")
    def _operation_needs(self) -> "CrmConfig":
        op = self.operation
        if op == "query" and not self.soql.strip():
            raise ValueError("a query needs soql")
        if op in ("upsert", "create") and not NAME.match(self.object_type):
            raise ValueError(f"{op} needs object_type, a name such as Contact")
        if op == "upsert":
            if not NAME.match(self.external_id_field):
                raise ValueError("upsert needs external_id_field, a field name")
            if self.external_id in (None, ""):
                raise ValueError("upsert needs external_id, the record's value in that field")
        if self.dedup_field and (op != "create" or not NAME.match(self.dedup_field)):
            raise ValueError("dedup_field is a field name, and only for create")
        if op == "batch" and not self.requests:
            raise ValueError("a batch needs at least one request")
        return self


class _Session:
    """One step's calls: the credential, its token, a shared deadline."""

    def __init__(self, client: httpx.Client, credential: UsableCredential, deadline: float):
        self.client = client
        self.credential = credential
        self.deadline = deadline
        fields = credential.fields
        self.instance = str(fields["instance_url"]).rstrip("/")
        self.key = (credential.name, fields["token_url"], fields["client_id"],
                    credential.secrets.get("client_secret", ""))  # fmt: skip
        self.answered = 0  # API calls (not token calls) the remote answered

    def remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise base.ConnectorError(
                "timed out: the call took longer than its timeout",
                retryable=True, may_have_been_sent=self.answered > 0,
            )  # fmt: skip
        return left

    def _send(self, request: httpx.Request, *, api: bool) -> httpx.Response:
        url = request.url
        # Refused before any connection: the secret and the token go only
        # where the credential allows.
        allowed_hosts.check(self.credential, url.host, effective_port(url))
        request.extensions["timeout"] = httpx.Timeout(self.remaining()).as_dict()
        try:
            response = self.client.send(request)
        except base.ConnectorError:
            raise  # the outbound guard: nothing left
        except httpx.TransportError as exc:
            unsent = isinstance(exc, NOT_SENT_ERRORS) or not api
            kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "connection failed"
            raise base.ConnectorError(f"{kind}: {exc}", retryable=True,
                                      may_have_been_sent=not unsent) from None  # fmt: skip
        if api:
            self.answered += 1
        return response

    def token(self, *, fresh: bool = False, stale: str | None = None) -> str:
        with _tokens_lock:
            cached = _tokens.get(self.key)
            if cached and not fresh:
                return cached
            if cached and stale and cached != stale:
                return cached  # another call already refreshed it
        fields = self.credential.fields
        request = self.client.build_request(
            "POST", fields["token_url"],
            data={"grant_type": "client_credentials", "client_id": fields["client_id"],
                  "client_secret": self.credential.secrets.get("client_secret", "")},
        )  # fmt: skip
        response = self._send(request, api=False)
        if response.status_code != 200:
            status = response.status_code
            raise base.not_sent(
                f"the token endpoint answered {status}: {_error_text(response)}",
                retryable=status in RETRYABLE_STATUS,
                retry_after=retry_after_seconds(response.headers.get("retry-after")),
            )
        try:
            token = response.json()["access_token"]
        except (ValueError, KeyError, TypeError):
            raise base.not_sent("the token endpoint answered without an access_token") from None
        with _tokens_lock:
            _tokens[self.key] = token
        return token

    def call(self, method: str, path: str, *, json: Any = None, params=None) -> httpx.Response:
        """One API call; on 401 the token is fetched again and the call made
        once more (a 401 is the API refusing it: nothing was done)."""
        url = path if path.startswith("http") else self.instance + path
        token = self.token()
        for refreshed in (False, True):
            request = self.client.build_request(
                method, url, json=json, params=params,
                headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            )  # fmt: skip
            response = self._send(request, api=True)
            if response.status_code != 401 or refreshed:
                break
            token = self.token(fresh=True, stale=token)
        self._raise_for_status(method, path, response)
        return response

    def _raise_for_status(self, method: str, path: str, response: httpx.Response) -> None:
        status = response.status_code
        if status < 400:
            return
        raise base.ConnectorError(
            f"{method} {path.split('?')[0]} answered {status}: {_error_text(response)}",
            retryable=status in RETRYABLE_STATUS,
            retry_after=retry_after_seconds(response.headers.get("retry-after")),
            # 4xx and 503 (and 429): refused, not processed. Other 5xx may
            # come after the API acted: outcome unknown.
            may_have_been_sent=status >= 500 and status not in NOT_PROCESSED_STATUS,
            details={"status": status},
        )


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, list) and body and isinstance(body[0], dict):
        return f"{body[0].get('errorCode', '')} {body[0].get('message', '')}".strip()
    if isinstance(body, dict):
        parts = [body.get("error"), body.get("error_description")]
        return (": ".join(str(p) for p in parts if p) or str(body))[:200]
    return str(body)[:200]


def _json(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        raise base.ConnectorError("the CRM answered with something that is not JSON",
                                  retryable=False) from None  # fmt: skip


@base.register
class Crm(base.Connector):
    key = "crm"
    label = "CRM (Salesforce-style)"
    category = "Network"
    icon = "users"
    description = (
        "Query, upsert by external id, create or batch against a Salesforce-style REST API with "
        "an OAuth2 client-credentials credential; an upsert is idempotent, a create is unsafe "
        "unless it declares a dedup field; 429 and 503 wait for Retry-After."
    )
    Config = CrmConfig
    example_config = {
        "credential": "crm",
        "operation": "upsert",
        "object_type": "Contact",
        "external_id_field": "Customer_Id__c",
        "external_id": "{{ trigger.customer_id }}",
        "fields": {"Email": "{{ trigger.email }}"},
    }
    side_effect_class = base.SideEffect.UNSAFE  # per operation, see side_effect
    credential_fields = ("credential",)
    timeout_seconds = 120.0
    output_schema = {"type": "object"}

    def side_effect(self, config: CrmConfig) -> base.SideEffect:
        if config.operation == "query":
            return base.SideEffect.NONE
        if config.operation == "upsert":
            return base.SideEffect.IDEMPOTENT
        if config.operation == "create":
            return base.SideEffect.IDEMPOTENT if config.dedup_field else base.SideEffect.UNSAFE
        if all(r.method in ("GET", "PATCH") for r in config.requests):
            return base.SideEffect.IDEMPOTENT
        return base.SideEffect.UNSAFE

    def breaker_target(self, config: CrmConfig) -> str | None:
        # One credential is one account at the CRM, with one quota.
        return base.target_of("", config.credential)

    def execute(self, ctx: base.Context) -> base.Result:
        config: CrmConfig = ctx.config
        credential = credential_for(config.credential, types={"crm_oauth"})
        try:
            with netguard.guarded_client(config.timeout_seconds) as client:
                session = _Session(client, credential, time.monotonic() + config.timeout_seconds)
                output = getattr(self, f"_{config.operation}")(session, config, ctx)
        except httpx.InvalidURL as exc:
            raise base.not_sent(f"invalid URL: {exc}") from None
        except httpx.TimeoutException as exc:
            raise base.ConnectorError(f"timed out: {exc}", retryable=True) from None
        except httpx.TransportError as exc:
            raise base.ConnectorError(f"connection failed: {exc}", retryable=True) from None
        return base.Result(output=output)

    def _base(self, config: CrmConfig) -> str:
        return f"/services/data/v{config.api_version}"

    def _query(self, session: _Session, config: CrmConfig, ctx: base.Context) -> dict:
        response = session.call("GET", f"{self._base(config)}/query", params={"q": config.soql})
        records: list = []
        pages, total = 0, None
        while True:
            page = _json(response) or {}
            pages += 1
            if total is None:
                total = page.get("totalSize")
            records.extend(page.get("records") or [])
            next_url = page.get("nextRecordsUrl")
            if page.get("done", True) or not next_url or len(records) >= config.max_records:
                break
            if not isinstance(next_url, str) or not next_url.startswith("/services/data/"):
                raise base.ConnectorError(f"unexpected nextRecordsUrl {next_url!r}",
                                          retryable=False, may_have_been_sent=False)  # fmt: skip
            response = session.call("GET", next_url)
            ctx.heartbeat()
        truncated = len(records) > config.max_records or (
            not page.get("done", True) and bool(page.get("nextRecordsUrl"))
        )
        return {"records": records[: config.max_records], "total_size": total,
                "pages": pages, "truncated": truncated}  # fmt: skip

    def _upsert(self, session: _Session, config: CrmConfig, ctx: base.Context) -> dict:
        value = quote(str(config.external_id), safe="")
        path = (f"{self._base(config)}/sobjects/{config.object_type}/"
                f"{config.external_id_field}/{value}")  # fmt: skip
        response = session.call("PATCH", path, json=config.fields)
        body = _json(response) or {}
        return {"status": response.status_code, "created": response.status_code == 201,
                "id": body.get("id"), "external_id": str(config.external_id)}  # fmt: skip

    def _create(self, session: _Session, config: CrmConfig, ctx: base.Context) -> dict:
        if config.dedup_field:
            key = quote(ctx.idempotency_key, safe="")
            path = f"{self._base(config)}/sobjects/{config.object_type}/{config.dedup_field}/{key}"
            response = session.call("PATCH", path, json=config.fields)
        else:
            path = f"{self._base(config)}/sobjects/{config.object_type}"
            response = session.call("POST", path, json=config.fields)
        body = _json(response) or {}
        return {"status": response.status_code, "id": body.get("id"),
                "created": response.status_code == 201}  # fmt: skip

    def _batch(self, session: _Session, config: CrmConfig, ctx: base.Context) -> dict:
        body = {
            "haltOnError": config.halt_on_error,
            "batchRequests": [
                {"method": r.method, "url": r.url,
                 **({"richInput": r.rich_input} if r.rich_input is not None else {})}
                for r in config.requests
            ],
        }  # fmt: skip
        response = session.call("POST", f"{self._base(config)}/composite/batch", json=body)
        answer = _json(response) or {}
        results = answer.get("results") or []
        return {"has_errors": bool(answer.get("hasErrors")), "results": results}
