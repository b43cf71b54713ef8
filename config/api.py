"""The HTTP API, /api/v1/ (django-ninja). Session authentication for now:
a logged-in browser may call it; anyone else gets 401. Every endpoint checks
the same permission its page needs."""

from django.http import HttpRequest
from ninja import NinjaAPI, Schema
from ninja.errors import HttpError
from ninja.security import SessionAuth
from pydantic import ValidationError, field_validator

from config.roles import role_required
from connectors.base import ConnectorError, UnknownConnector, catalogue, get
from flows.api import router as flows_router
from runs.api import router as runs_router
from runs.ground import plainjson


class LoginFirst(SessionAuth):
    """Session authentication that asks who is calling before checking CSRF:
    django-ninja checks the CSRF token first, so an anonymous POST answered
    403 (CSRF) where the API promises 401. A logged-in browser still needs
    the token."""

    def _get_key(self, request: HttpRequest):
        if not request.user.is_authenticated:
            return None  # authenticate() says no: 401
        return super()._get_key(request)


api = NinjaAPI(
    title="Ledgerflow API",
    version="1",
    urls_namespace="api",
    auth=LoginFirst(),
    # The docs name every endpoint: readable by the roles that read flows.
    docs_decorator=role_required("flows.view_flow"),
)

# The flow editor's endpoints: drafts, validation, publishing, versions.
api.add_router("/", flows_router)
# Runs: what the run pages show (a run's diagram).
api.add_router("/", runs_router, tags=["runs"])


def require(request: HttpRequest, permission: str) -> None:
    if not request.user.has_perm(permission):
        raise HttpError(403, f"Your role does not allow this ({permission}).")


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
    require(request, "flows.view_flow")
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
    require(request, "flows.change_flow")
    try:
        connector = get(key)
    except UnknownConnector:
        raise HttpError(404, f"no connector “{key}”") from None
    if connector.test_connection is None:
        raise HttpError(400, f"{key} has no connection test")
    try:
        config = connector.Config.model_validate((payload or ConnectionTestIn()).config)
    except ValidationError as exc:
        return {"ok": False, "error": f"config: {exc}"}
    try:
        connector.test_connection(config)
    except ConnectorError as exc:
        return {"ok": False, "error": str(exc)}
    return {"ok": True}
