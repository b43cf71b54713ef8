"""The connector contract, checked for every registered connector, and the
catalogue that shows it (page and API)."""

import json

import jsonschema
import pytest

from connectors import base
from connectors.base import all_connectors
from flows.secrets import is_secret_name
from tests.conftest import allow_outbound, login
from tests.payments_helpers import report

# Connectors of the product, and the demo's (the suite runs with
# LEDGERFLOW_DEMO on); tests register a few of their own.
PRODUCT = sorted(
    key
    for key, cls in all_connectors().items()
    if cls.__module__.startswith(("connectors.nodes.", "fakeapi.connectors."))
)

# Connectors whose effect stays inside Ledgerflow, so no remote is
# protected by a breaker: why each one has none.
EFFECT_STAYS_INSIDE = {
    "event.emit": "publishes on the platform's own event bus",
    "queue.publish": "publishes to the platform's own broker",
    "subflow": "starts a run of another flow",
    "cpu.work": "spins the worker's CPU (benchmarks)",
}


def test_the_registry_holds_the_product_connectors():
    for key in ("switch", "merge", "loop", "wait.until", "subflow", "payments.charge",
                "inventory.reserve"):  # fmt: skip
        assert key in PRODUCT


@pytest.mark.parametrize("key", PRODUCT)
def test_a_node_module_is_named_after_its_key(key):
    """Where a connector lives follows from its key: ``http.request`` is
    ``connectors/nodes/http_request.py`` (a demo one, ``fakeapi/connectors/``)."""
    module = all_connectors()[key].__module__
    assert module.rsplit(".", 1)[-1] == key.replace(".", "_")


# --- breaker targets -----------------------------------------------------------


def _has_an_effect(cls: type[base.Connector]) -> bool:
    """Changes or reaches something: a side effect, by class or for its
    example, or a credential it sends somewhere (a trigger's only checks
    what comes in)."""
    example = cls.Config.model_validate(cls.example_config)
    return (
        cls.side_effect_class != base.SideEffect.NONE
        or cls().side_effect(example) != base.SideEffect.NONE
        or (bool(cls.credential_fields) and not cls.is_trigger)
    )


def _target(cls: type[base.Connector], **changes) -> str | None:
    config = cls.Config.model_validate({**cls.example_config, **changes})
    return cls().breaker_target(config)


REACHES_OUTSIDE = [
    key
    for key in PRODUCT
    if _has_an_effect(all_connectors()[key]) and key not in EFFECT_STAYS_INSIDE
]


def test_the_connectors_that_reach_outside_are_the_ones_expected():
    assert set(REACHES_OUTSIDE) >= {"http.request", "email.send", "postgres.query",
                                    "payments.charge", "inventory.reserve"}  # fmt: skip
    for key in EFFECT_STAYS_INSIDE:
        cls = all_connectors()[key]
        assert _has_an_effect(cls) and not cls.credential_fields
        assert _target(cls) is None


@pytest.mark.parametrize("key", REACHES_OUTSIDE)
def test_a_connector_with_an_effect_derives_its_breaker_target_from_its_config(key):
    """Every call that leaves Ledgerflow is held back by its target's breaker
    and rate limit (runs/execute.py, at the claim): a connector with an effect
    that named no target would hammer a failing remote unchecked, and two
    remotes sharing one target would trip each other's breaker."""
    cls = all_connectors()[key]
    assert _target(cls) is not None, f"{key} names no breaker target for its example"
    varied = False
    for field in cls.credential_fields:
        first, second = _target(cls, **{field: "first"}), _target(cls, **{field: "second"})
        assert first and second and first != second, f"{key}: {field} does not set the target"
        varied = True
    url_fields = [name for name in cls.Config.model_fields if name.endswith("url")]
    for field in url_fields:
        anonymous = {name: None for name in cls.credential_fields}
        one = _target(cls, **anonymous, **{field: "https://one.example.com/a"})
        two = _target(cls, **anonymous, **{field: "https://two.example.com/a"})
        assert one and two and one != two, f"{key}: the host in {field} does not set the target"
        varied = True
    assert varied, f"{key}: names neither a credential nor a URL to derive its target from"


@pytest.mark.parametrize("key", PRODUCT)
def test_a_connector_declares_what_the_catalogue_shows(key):
    cls = all_connectors()[key]
    assert cls.label and cls.category and cls.icon and cls.description
    assert cls.side_effect_class in base.SideEffect
    assert cls.ports_for(cls(), cls.example_config)


@pytest.mark.parametrize("key", PRODUCT)
def test_its_example_config_round_trips(key):
    cls = all_connectors()[key]
    config = cls.Config.model_validate(cls.example_config)
    again = cls.Config.model_validate(config.model_dump(mode="json"))
    assert again == config
    assert cls().side_effect(config) in base.SideEffect


@pytest.mark.parametrize("key", PRODUCT)
def test_its_config_schema_is_valid_json_schema_that_accepts_the_example(key):
    cls = all_connectors()[key]
    schema = json.loads(json.dumps(cls.Config.model_json_schema()))
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(cls.example_config)
    if cls.output_schema is not None:
        jsonschema.Draft202012Validator.check_schema(cls.output_schema)


def _field_names(schema: dict, defs: dict, path: str = ""):
    """Every property of a JSON Schema at any depth, with its schema."""
    if "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[-1]]
    for name, spec in schema.get("properties", {}).items():
        yield path + name, spec
        for sub in [spec, *spec.get("anyOf", []), spec.get("items") or {}]:
            if isinstance(sub, dict) and ("$ref" in sub or "properties" in sub):
                yield from _field_names(sub, defs, f"{path}{name}.")


@pytest.mark.parametrize("key", PRODUCT)
def test_no_config_field_holds_a_secret(key):
    """Secrets come only from credentials: a config (recorded verbatim in the
    log) has no field for one. A secret-like name is allowed only on a flag."""
    cls = all_connectors()[key]
    assert not hasattr(cls, "secret_fields")
    schema = cls.Config.model_json_schema()
    for name, spec in _field_names(schema, schema.get("$defs", {})):
        if is_secret_name(name.rsplit(".", 1)[-1]):
            assert spec.get("type") == "boolean", f"{key}: {name} looks like a secret field"
    assert set(cls.credential_fields) <= set(schema.get("properties", {}))


def test_the_payments_connectors_name_a_credential():
    for key in ("payments.charge", "inventory.reserve"):
        cls = all_connectors()[key]
        assert cls.credential_fields == ("credential",) and cls.has_compensate()
        assert "api_key" not in cls.Config.model_json_schema()["properties"]


def test_test_connection_reaches_the_remote_or_says_why_not(payments, settings):
    charge = all_connectors()["payments.charge"]()
    config = charge.Config.model_validate({"base_url": payments.url, "order_id": "x", "amount": 1})
    charge.test_connection(config)  # answers: no error
    down = config.model_copy(update={"base_url": "http://127.0.0.1:9"})
    with pytest.raises(base.ConnectorError, match="internal address"):
        charge.test_connection(down)  # not on the outbound allowlist: refused unsent
    allow_outbound(settings, "http://127.0.0.1:9")
    with pytest.raises(base.ConnectorError, match="connection failed"):
        charge.test_connection(down)


# --- the catalogue page and API ------------------------------------------------


def test_the_catalogue_page_groups_connectors_by_category(client, rita):
    response = login(client, rita).get("/connectors/")
    page = response.content.decode()
    assert response.status_code == 200
    for category in ("Logic", "Payments", "Inventory", "Triggers"):
        assert f"<h2>{category}</h2>" in page
    assert "Charge payment" in page and "compensatable" in page and "names a credential" in page


def test_the_api_lists_connectors_with_schemas_and_redacted_secrets(client, olga):
    response = login(client, olga).get("/api/v1/connectors")
    assert response.status_code == 200
    entries = {entry["key"]: entry for entry in response.json()}
    assert set(PRODUCT) <= set(entries)
    charge = entries["payments.charge"]
    assert charge["config_schema"]["properties"]["order_id"]["type"] == "string"
    assert charge["credential_fields"] == ["credential"]
    assert charge["example_config"]["credential"] == "payments-api"
    assert entries["switch"]["dynamic_ports"] and entries["switch"]["ports"] == [
        "france", "germany", "elsewhere"
    ]  # fmt: skip
    # The palette must not call a POST that is unsafe by default "idempotent".
    assert entries["http.request"]["side_effect_varies"] is True
    assert entries["transform"]["side_effect_varies"] is False


def test_the_api_needs_a_login_and_a_role(client, nora):
    assert client.get("/api/v1/connectors").status_code == 401
    assert login(client, nora).get("/api/v1/connectors").status_code == 403


def test_the_api_docs_are_served_to_readers(client, rita):
    login(client, rita)
    assert client.get("/api/v1/docs").status_code == 200
    schema = client.get("/api/v1/openapi.json").json()
    assert "/api/v1/connectors" in schema["paths"]


def test_an_operator_tests_a_connection_through_the_api(client, olga, rita, payments, settings):
    allow_outbound(settings, "http://127.0.0.1:9")  # a closed port, to see the failure
    url = "/api/v1/connectors/payments.charge/test-connection"
    login(client, olga)
    good = {"config": {"base_url": payments.url, "order_id": "x", "amount": 1}}
    assert client.post(url, good, content_type="application/json").json() == {
        "ok": True,
        "error": "",
    }
    down = {"config": {**good["config"], "base_url": "http://127.0.0.1:9"}}
    answer = client.post(url, down, content_type="application/json").json()
    assert answer["ok"] is False and "connection failed" in answer["error"]
    bad = client.post(url, {"config": {"amount": 1}}, content_type="application/json").json()
    assert bad["ok"] is False and "order_id" in bad["error"]
    missing = client.post("/api/v1/connectors/nope/test-connection", good,
                          content_type="application/json")  # fmt: skip
    assert missing.status_code == 404
    assert report_requests(payments) == 0  # a test has no effect
    login(client, rita)
    assert client.post(url, good, content_type="application/json").status_code == 403


def report_requests(payments) -> int:
    return report(payments)["requests"]
