"""The HTTP API, /api/v1/ (django-ninja). Session authentication for now:
a logged-in browser may call it; anyone else gets 401. Every endpoint checks
the same permission its page needs."""

from django.http import HttpRequest
from ninja import NinjaAPI, Schema
from ninja.errors import HttpError
from ninja.security import django_auth

from config.roles import role_required
from connectors.base import catalogue

api = NinjaAPI(
    title="Ledgerflow API",
    version="1",
    urls_namespace="api",
    auth=django_auth,
    # The docs name every endpoint: readable by the roles that read flows.
    docs_decorator=role_required("flows.view_flow"),
)


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
    is_trigger: bool
    inline: bool
    ports: list[str]
    dynamic_ports: bool
    has_compensate: bool
    has_test_connection: bool
    secret_fields: list[str]
    config_schema: dict
    output_schema: dict | None
    example_config: dict


@api.get("/connectors", response=list[ConnectorOut], url_name="connectors", tags=["connectors"])
def connectors_list(request: HttpRequest):
    """Every registered connector, with its config's JSON Schema (what an
    editor renders) and a sample config whose secrets are redacted."""
    require(request, "flows.view_flow")
    return catalogue()
