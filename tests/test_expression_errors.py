"""Expression errors say what people need: which reference is missing and
what is there instead, never Jinja's "'dict object' has no attribute". The
same words at run time (step errors, dead letters), in the editor's preview
and at publishing."""

import pytest

from flows.graph import InvalidGraph, validate
from runs import driver, expressions
from runs.models import Step
from tests.engine_helpers import chain, publish, transform

DATA = {
    "trigger": {"body": {"email": "ada@example.test", "amount": 5}, "items": [1, 2, 3]},
    "steps": {
        "start": {"output": {"body": {"email": "ada@example.test", "amount": 5}}},
        "shape": {"output": {"amount": 5, "note": "gift"}},
        "lookup": {"output": {"id": "C-1", "tags": None}},
    },
    "run": {"id": 7, "root_id": 7},
}


def error_of(template: str) -> str:
    with pytest.raises(expressions.ExpressionError) as caught:
        expressions.render(template, DATA)
    return str(caught.value)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ steps.shape.output.body }}", "steps.shape has no field body (it has: amount, note)"),
        ("{{ steps.charge.output.id }}",
         "steps.charge is not a step before this node (earlier steps: start, shape, lookup)"),
        ("{{ trigger.body.emial }}", "trigger.body has no field emial (it has: email, amount)"),
        # Inside text, and in the middle of arithmetic: the same words.
        ("Dear {{ trigger.body.emial }}!",
         "trigger.body has no field emial (it has: email, amount)"),
        ("{{ steps.shape.output.body.x + 1 }}",
         "steps.shape has no field body (it has: amount, note)"),
        ("{{ steps.shape.amount }}",
         "steps.shape has no field amount; a step's data is steps.shape.output.… "
         "(steps.shape.output has: amount, note)"),
        ("{{ trigger.items[5] }}", "trigger.items has no item 5 (it has 3 items)"),
        ("{{ trigger.body.amount.cents }}",
         "trigger.body.amount is a number (5), which has no field cents"),
        ("{{ steps.lookup.output.tags.first }}",
         "steps.lookup.tags is empty (null), which has no field first"),
        ("{{ trigr.body }}", "trigr is not defined here (you can use: trigger, steps, run)"),
    ],
)  # fmt: skip
def test_missing_references_are_named_with_what_is_there(template, message):
    assert error_of(template) == message


def test_a_reference_under_a_default_is_not_blamed():
    template = "{{ steps.charge.output.id | default('none') }}-{{ trigger.body.emial }}"
    assert error_of(template) == "trigger.body has no field emial (it has: email, amount)"
    assert expressions.render("{{ steps.charge.output.id | default('none') }}", DATA) == "none"


def test_loop_variables_and_methods_are_not_mistaken_for_missing_fields():
    template = "{% for k in trigger.body.keys() %}{{ k }} {% endfor %}{{ trigger.nope }}"
    assert error_of(template) == "trigger has no field nope (it has: body, items)"


def test_jinjas_words_never_reach_the_person():
    for template in ("{{ trigger.body.x.y }}", "{{ steps.shape.output['body'] }}"):
        message = error_of(template)
        assert "dict object" not in message and "has no attribute" not in message


def test_a_dead_letter_carries_the_human_message(olga, eager_celery):
    flow = publish(olga, chain(transform("shape", amount="{{ trigger.amount }}", currency="EUR"),
                               transform("use", v="{{ steps.shape.output.body }}")))  # fmt: skip
    with eager_celery():
        run = driver.start_run(flow=flow, input={"amount": 3}, actor="u")
    use = Step.objects.get(run=run, node_id="use")
    assert use.status == "dead_lettered"
    # Fields in the order the stored output holds them.
    assert use.error == "config: steps.shape has no field body (it has: amount, currency)"


def publish_errors(document) -> list[str]:
    with pytest.raises(InvalidGraph) as caught:
        validate(document)
    return [str(e) for e in caught.value.errors]


def test_publishing_uses_the_same_words_for_a_step_that_is_not_before():
    document = chain(transform("shape", a=1), transform("lookup", b=2),
                     transform("use", v="{{ steps.charge.output.id }}"),
                     transform("charge", c=3))  # fmt: skip
    assert publish_errors(document) == [
        "node “use”: steps.charge is not a step before this node "
        "(earlier steps: start, shape, lookup)"
    ]
    document["nodes"][3]["config"]["fields"]["v"] = "{{ steps.ghost.output }}"
    assert publish_errors(document) == [
        "node “use”: steps.ghost is not a step before this node "
        "(earlier steps: start, shape, lookup); no node is called ghost"
    ]


def test_the_reference_the_render_failed_on_is_blamed_not_an_unevaluated_one():
    # trigger.nope is never evaluated (the condition is false); shape's body is.
    template = "{% if false %}{{ trigger.nope }}{% endif %}{{ steps.shape.output.body.x }}"
    assert error_of(template) == "steps.shape has no field body (it has: amount, note)"
