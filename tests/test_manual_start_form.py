"""The flow page's start form comes from the manual trigger's input schema:
simple properties become inputs, anything else keeps the JSON textarea, and
both are validated against the schema with the error on its field."""

from django.urls import reverse

from runs.models import Run
from tests.conftest import login
from tests.trigger_helpers import triggered_flow

SCHEMA = {
    "type": "object",
    "required": ["order_id", "quantity"],
    "properties": {
        "order_id": {"type": "string", "title": "Order id", "minLength": 3},
        "quantity": {"type": "integer", "minimum": 1},
        "price": {"type": "number"},
        "gift": {"type": "boolean"},
        "speed": {"enum": ["standard", "express", 2]},
    },
}


def manual(schema: dict) -> dict:
    return {"type": "trigger.manual", "config": {"input_schema": schema}}


def start_url(flow) -> str:
    return reverse("flows:start_run", kwargs={"slug": flow.slug})


def test_the_start_form_has_one_input_per_schema_property(client, olga):
    flow = triggered_flow(olga, manual(SCHEMA), slug="orders")
    page = login(client, olga).get(reverse("flows:detail", kwargs={"slug": flow.slug}))
    html = page.content.decode()
    for name in ("order_id", "quantity", "price", "gift", "speed"):
        assert f'name="{name}"' in html
    assert "Order id" in html and 'type="number"' in html and 'type="checkbox"' in html
    assert 'name="input"' not in html


def test_typed_values_start_a_run_with_a_typed_input(client, olga):
    flow = triggered_flow(olga, manual(SCHEMA), slug="orders")
    response = login(client, olga).post(
        start_url(flow),
        {"order_id": "A-100", "quantity": "2", "price": "9.5", "gift": "on", "speed": "2"},
    )
    assert response.status_code == 302
    run = Run.objects.get(flow=flow)
    assert run.input == {"order_id": "A-100", "quantity": 2, "price": 9.5, "gift": True, "speed": 2}


def test_invalid_values_show_field_errors_and_keep_what_was_typed(client, olga):
    flow = triggered_flow(olga, manual(SCHEMA), slug="orders")
    response = login(client, olga).post(
        start_url(flow), {"order_id": "AB", "quantity": "many", "speed": "express"}
    )
    assert response.status_code == 422
    form = response.context["start_form"]
    assert "quantity" in form.errors and "Enter a whole number." in form.errors["quantity"]
    assert 'value="AB"' in response.content.decode()
    assert not Run.objects.filter(flow=flow).exists()
    short = client.post(start_url(flow), {"order_id": "AB", "quantity": "1"})
    assert short.status_code == 422
    assert "order_id" in short.context["start_form"].errors


def test_a_nested_schema_keeps_the_json_textarea_and_validates_it(client, olga):
    nested = {
        "type": "object",
        "required": ["customer"],
        "properties": {"customer": {"type": "object", "required": ["email"]}},
    }
    flow = triggered_flow(olga, manual(nested), slug="orders")
    login(client, olga)
    page = client.get(reverse("flows:detail", kwargs={"slug": flow.slug})).content.decode()
    assert 'name="input"' in page
    refused = client.post(start_url(flow), {"input": '{"customer": {}}'})
    assert refused.status_code == 422
    assert "email" in " ".join(refused.context["start_form"].errors["input"])
    broken = client.post(start_url(flow), {"input": "{oops"})
    assert broken.status_code == 422 and "Not valid JSON" in broken.content.decode()
    assert (
        client.post(start_url(flow), {"input": '{"customer": {"email": "a@b.c"}}'}).status_code
        == 302
    )
    assert Run.objects.get(flow=flow).input == {"customer": {"email": "a@b.c"}}
