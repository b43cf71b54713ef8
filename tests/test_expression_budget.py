"""Every render of a node's expressions has a CPU budget, counted as the
template runs (loop iterations, calls, output), so one expression cannot
hold a worker, a web request or the database's write lock for seconds."""

import threading
import time

import pytest

from runs import driver, expressions
from runs.models import Run, Step
from tests.engine_helpers import chain, publish, transform

# Three nested loops: 27 million iterations, several seconds unbounded.
NESTED = (
    "{% for i in range(300) %}{% for j in range(300) %}{% for k in range(300) %}"
    "{% endfor %}{% endfor %}{% endfor %}done"
)
# The same without a call in the loops: only the iterations can be counted.
NESTED_OVER_ONE_LIST = (
    "{% set r = range(300) | list %}"
    "{% for i in r %}{% for j in r %}{% for k in r %}{% endfor %}{% endfor %}{% endfor %}done"
)
EXPONENTIAL_MACRO = (
    "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(22) }}"
)
OVER_BUDGET = "field 'fields.total': expression exceeded its time budget (100 ms)"


def timed(value, data=None):
    started = time.monotonic()
    try:
        result = expressions.render(value, data or {})
    except expressions.ExpressionError as exc:
        return exc, time.monotonic() - started
    return result, time.monotonic() - started


@pytest.mark.parametrize("template", [NESTED, NESTED_OVER_ONE_LIST, EXPONENTIAL_MACRO])
def test_a_runaway_template_fails_fast_naming_its_field(template, settings):
    settings.LEDGERFLOW_EXPRESSION_BUDGET_MS = 100
    error, seconds = timed({"fields": {"total": template}})
    assert isinstance(error, expressions.ExpressionTimeout)
    assert str(error) == OVER_BUDGET
    assert seconds < 1.0


def test_a_cached_template_gets_a_fresh_budget_and_is_bounded_again(settings):
    settings.LEDGERFLOW_EXPRESSION_BUDGET_MS = 100
    hits = expressions._template.cache_info().hits
    for _ in range(3):
        error, seconds = timed({"fields": {"total": NESTED}})
        assert isinstance(error, expressions.ExpressionTimeout) and seconds < 1.0
    assert expressions._template.cache_info().hits >= hits + 2  # compiled once, cached


def test_a_normal_template_still_renders_within_the_budget(settings):
    settings.LEDGERFLOW_EXPRESSION_BUDGET_MS = 100
    data = {"trigger": {"lines": [{"sku": f"S-{n}", "qty": n} for n in range(500)]}}
    config = {
        "fields": {
            "count": "{{ trigger.lines | length }}",
            "total": "{{ trigger.lines | sum(attribute='qty') }}",
            "skus": "{% for line in trigger.lines %}{{ line.sku }}{% if not loop.last %},"
            "{% endif %}{% endfor %}",
        }
    }
    for _ in range(2):  # compiled, then cached
        result, _ = timed(config, data)
        assert result["fields"]["count"] == 500 and result["fields"]["total"] == 124750
        skus = result["fields"]["skus"]
        assert skus.startswith("S-0,S-1,") and skus.endswith(",S-499")


def test_rendering_off_the_main_thread_is_bounded_too(settings):
    settings.LEDGERFLOW_EXPRESSION_BUDGET_MS = 100
    outcome = {}
    worker = threading.Thread(target=lambda: outcome.update(r=timed({"total": NESTED})))
    worker.start()
    worker.join(timeout=5)
    assert not worker.is_alive()
    error, seconds = outcome["r"]
    assert isinstance(error, expressions.ExpressionTimeout) and seconds < 1.0


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ 'x' | center(1000000000) }}", "a width of 1000000000 would exceed the output cap"),
        ("{{ 'x'.ljust(1000000000) }}", "a width of 1000000000 would exceed the output cap"),
        ("{{ '%999999999d' % 1 }}", "a width of 999999999 would exceed the output cap"),
        ("{{ '%*d' | format(999999999, 1) }}", "a width of 999999999 would exceed the output cap"),
        ("{{ '{:>999999999}'.format(1) }}", "a width of 999999999 would exceed the output cap"),
        ("{{ ('a' * 60000) | replace('a', 'a' * 60000) }}", "replace would exceed the output cap"),
        ("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", "recursion is too deep"),
    ],
)
def test_one_call_that_would_build_a_huge_string_is_refused_before_it_runs(template, message):
    error, seconds = timed(template)
    assert isinstance(error, expressions.ExpressionError) and str(error) == message
    assert seconds < 1.0


def test_honest_formatting_is_left_alone():
    data = {"trigger": {"n": 7, "name": "Ada"}}
    assert expressions.render("{{ '%05d' % trigger.n }}", data) == "00007"
    assert expressions.render("{{ '{:>6}'.format(trigger.name) }}", data) == "   Ada"
    assert expressions.render("{{ 'Order 1234567890: %s' % trigger.name }}", data) == (
        "Order 1234567890: Ada"
    )
    assert expressions.render("{{ trigger.name | center(9) }}", data) == "   Ada   "
    assert expressions.render("{{ 'a-b-c' | replace('-', '+') }}", data) == "a+b+c"
    assert expressions.render("{{ 17 % 5 }}", data) == 2


def test_the_step_fails_at_once_naming_the_node_and_field(olga, settings):
    settings.LEDGERFLOW_EXPRESSION_BUDGET_MS = 100
    flow = publish(olga, chain(transform("shape", total=NESTED)), slug="runaway")
    started = time.monotonic()
    run = driver.start_run(flow=flow, input={}, actor="user:olga")
    assert time.monotonic() - started < 1.0  # the request that started it is not held
    shape = Step.objects.get(run=run, node_id="shape")
    assert shape.error == f"node 'shape' {OVER_BUDGET}"
    assert (shape.status, shape.attempt, shape.due_at) == ("dead_lettered", 1, None)  # no retry
    assert Run.objects.get(pk=run.pk).status == "waiting"


def test_a_runaway_concurrency_key_refuses_the_start_quickly(olga, settings):
    settings.LEDGERFLOW_EXPRESSION_BUDGET_MS = 100
    graph = chain(transform("shape", ok=True))
    graph["settings"] = {"concurrency_key": NESTED}
    flow = publish(olga, graph, slug="runaway-key")
    started = time.monotonic()
    with pytest.raises(driver.StartRefused, match="exceeded its time budget"):
        driver.start_run(flow=flow, input={}, actor="user:olga")
    assert time.monotonic() - started < 1.0
    assert not Run.objects.filter(flow=flow).exists()


def test_a_deeply_nested_expression_is_a_clear_error_at_publish_not_a_crash():
    from flows.graph import InvalidGraph, validate

    nested = "{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}"
    graph = chain(transform("shape", total=nested))
    with pytest.raises(InvalidGraph, match="the expression is nested too deeply"):
        validate(graph)
    error, _ = timed(nested)
    assert str(error) == "recursion is too deep"
