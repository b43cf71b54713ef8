"""The HTTP API, /api/v1/ (django-ninja).

- Who calls: a personal API token (``Authorization: Bearer lf_…``,
  config/tokens), or a logged-in browser's session with its CSRF token (the
  pages' own calls). Anyone else gets 401.
- What they may do: every endpoint checks the same permission its page
  needs (``config.roles.require``); a token is held to its scope too.
- Errors in one shape, ``{"error": {"code", "message", "details"}}``.
- Writes are rate-limited per token (config/tokens/ratelimit.py).
"""

import math
from functools import wraps

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest
from ninja import NinjaAPI, Schema
from ninja.errors import AuthenticationError, HttpError, Throttled, ValidationError
from ninja.security import SessionAuth
from pydantic import ValidationError as PydanticError
from pydantic import field_validator

from approvals.api import router as approvals_router
from config.roles import refusal, require, role_required
from config.tokens import errors
from config.tokens.auth import BearerToken
from config.tokens.ratelimit import WriteThrottle
from connectors.base import ConnectorError, UnknownConnector, catalogue, get
from flows.api import router as flows_router
from runs.api import router as runs_router
from runs.ground import plainjson

DOCS_PERMISSION = "flows.view_flow"


class LoginFirst(SessionAuth):
    """Session authentication that asks who is calling before checking CSRF:
    django-ninja checks the CSRF token first, so an anonymous POST answered
    403 (CSRF) where the API promises 401. A logged-in browser still needs
    the token."""

    def _get_key(self, request: HttpRequest):
        if not request.user.is_authenticated:
            return None  # authenticate() says no: 401
        return super()._get_key(request)


def docs_access(view):
    """The schema and the docs page name every endpoint: readable by the
    roles that read flows, with a session (else the login page) or a token
    (else 401 in the API's error shape)."""
    page = role_required(DOCS_PERMISSION)(view)

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.headers.get("Authorization", "").lower().startswith("bearer "):
            return page(request, *args, **kwargs)
        if not BearerToken()(request):
            return errors.response(401, "The token is unknown, revoked or expired.")
        why = refusal(request.user, DOCS_PERMISSION)
        if why:
            return errors.response(403, why)
        return view(request, *args, **kwargs)

    return wrapper


ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {},
            },
        }
    },
}
ERROR_ANSWERS = {
    400: "The request cannot be read or stored.",
    401: "No valid token or session.",
    403: "The role or the token's scope does not allow this, or the resource refuses.",
    404: "No such resource.",
    409: "Conflicts with the resource's state or an earlier Idempotency-Key.",
    422: "The request does not fit the schema; details name each problem.",
    429: "Too many writes for this token; see Retry-After.",
}
WRITES = ("post", "put", "patch", "delete")
# The calls that take an Idempotency-Key (config/tokens/idempotency.py).
IDEMPOTENT = {"flows_api_run_start", "approvals_api_task_decide"}


class LedgerflowAPI(NinjaAPI):
    def get_openapi_schema(self, *args, **kwargs):
        """Every operation documents the error answers it may give, in the
        one error shape (429 on writes only)."""
        schema = super().get_openapi_schema(*args, **kwargs)
        schema.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
        ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        for operations in schema["paths"].values():
            for method, operation in operations.items():
                if operation.get("operationId") in IDEMPOTENT:
                    operation.setdefault("parameters", []).append({
                        "in": "header",
                        "name": "Idempotency-Key",
                        "required": False,
                        "description": "Retries with the same key get the first answer; "
                        "kept 24 h per person.",
                        "schema": {"type": "string", "minLength": 1, "maxLength": 200},
                    })  # fmt: skip
                answers = operation.setdefault("responses", {})
                for status, description in ERROR_ANSWERS.items():
                    if status == 429 and method not in WRITES:
                        continue
                    if str(status) in answers or status in answers:
                        continue
                    answers[str(status)] = {"description": description, "content": ref}
                    if status == 429:
                        answers["429"]["headers"] = {"Retry-After": {"schema": {"type": "integer"}}}
        return schema


api = LedgerflowAPI(
    title="Ledgerflow API",
    version="1",
    description=(
        "Everything the pages do. Authenticate with a personal API token "
        "(`Authorization: Bearer lf_…`, made on your profile page) or, from "
        "the pages, the session and its CSRF token. Errors have one shape: "
        '`{"error": {"code", "message", "details"}}`. Writes are rate-limited '
        "per token (429 with Retry-After). Starting a run and deciding an "
        "approval take an `Idempotency-Key` header."
    ),
    urls_namespace="api",
    auth=[BearerToken(), LoginFirst()],
    throttle=[WriteThrottle()],
    docs_decorator=docs_access,
)


@api.exception_handler(HttpError)
def _http_error(request, exc: HttpError):
    answer = errors.response(exc.status_code, str(exc))
    if isinstance(exc, Throttled):
        wait = getattr(request, "throttle_wait", None) or exc.wait or 1
        answer["Retry-After"] = str(math.ceil(wait))
        answer.content = api.renderer.render(
            request,
            errors.body(
                429,
                f"Too many writes; try again in {math.ceil(wait)} s.",
                {"retry_after": math.ceil(wait)},
            ),  # fmt: skip
            response_status=429,
        )
    if isinstance(exc, AuthenticationError):
        answer.content = api.renderer.render(
            request,
            errors.body(401, "Authenticate with a bearer token or log in."),
            response_status=401,
        )
    return answer


@api.exception_handler(errors.ApiError)
def _api_error(request, exc: errors.ApiError):
    return errors.response(exc.status, exc.message, exc.details, exc.code)


@api.exception_handler(ValidationError)
def _invalid(request, exc: ValidationError):
    return errors.response(422, "The request does not fit the schema.", {"errors": exc.errors})


@api.exception_handler(Http404)
def _not_found(request, exc):
    return errors.response(404, str(exc) or "Not found.")


@api.exception_handler(PermissionDenied)
def _denied(request, exc):
    return errors.response(403, str(exc) or "You may not do this.")


# The flow editor's endpoints: drafts, validation, publishing, versions.
api.add_router("/", flows_router)
# Runs: starting one, what the run pages show (a run's diagram).
api.add_router("/", runs_router, tags=["runs"])
# Approvals: my tasks, deciding one.
api.add_router("/", approvals_router, tags=["approvals"])


class ConnectorOut(Schema):
    key: str
    label: str
    category: str
    icon: str
    description: str
    side_effect: str
    side_effect_varies: bool
    is_trigger: bool
    inline: bool
    ports: list[str]
    dynamic_ports: bool
    has_compensate: bool
    has_test_connection: bool
    credential_fields: list[str]
    in_palette: bool
    config_schema: dict
    output_schema: dict | None
    example_config: dict


@api.get("/connectors", response=list[ConnectorOut], url_name="connectors", tags=["connectors"])
def connectors_list(request: HttpRequest):
    """Every registered connector, with its config's JSON Schema (what an
    editor renders) and a sample config. No config holds a secret: a
    credential field names a credential from the store."""
    require(request.user, "flows.view_flow")
    return catalogue()


class ConnectionTestIn(Schema):
    config: dict = {}

    @field_validator("config")
    @classmethod
    def _storable(cls, value: dict) -> dict:
        problem = plainjson.problem(value)
        if problem:
            raise ValueError(problem)
        return value


class ConnectionTestOut(Schema):
    ok: bool
    error: str = ""


@api.post(
    "/connectors/{key}/test-connection",
    response=ConnectionTestOut,
    url_name="connector_test_connection",
    tags=["connectors"],
)
def connector_test_connection(
    request: HttpRequest, key: str, payload: ConnectionTestIn | None = None
):
    """Check a config against the remote (reachability, credentials) without
    any effect. ``ok: false`` says why it did not work."""
    require(request.user, "flows.change_flow")
    try:
        connector = get(key)
    except UnknownConnector:
        raise HttpError(404, f"no connector “{key}”") from None
    if connector.test_connection is None:
        raise HttpError(400, f"{key} has no connection test")
    try:
        config = connector.Config.model_validate((payload or ConnectionTestIn()).config)
    except PydanticError as exc:
        return {"ok": False, "error": f"config: {exc}"}
    try:
        connector.test_connection(config)
    except ConnectorError as exc:
        return {"ok": False, "error": str(exc)}
    return {"ok": True}
