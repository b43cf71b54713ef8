"""The Graph the decider reads carries what the connector registry says of
each node, resolved once when the driver loads a version."""

from connectors import base as connectors
from flows.graph import validate
from runs.decider import NodeFacts
from runs.graph_facts import build_graph, connector_of
from tests.engine_helpers import chain, transform

SWITCH = {
    "value": "{{ trigger.country }}",
    "default_port": "elsewhere",
    "cases": [{"equals": "FR", "port": "france"}, {"equals": "DE", "port": "germany"}],
}
CHARGE = {"order_id": "{{ trigger.order_id }}", "amount": "{{ trigger.amount }}",
          "credential": "payments-api"}  # fmt: skip


def _graph():
    document = chain(
        {"id": "charge", "type": "payments.charge", "config": CHARGE, "compensation": "default"},
        {"id": "route", "type": "switch", "config": SWITCH},
    )
    document["nodes"] += [
        {"id": "call", "type": "http.request", "config": {"url": "http://127.0.0.1:1/x"}},
        transform("shape", v=1),
    ]
    document["edges"] += [
        {"from": "route", "from_port": "france", "to": "call"},
        {"from": "route", "from_port": "germany", "to": "shape"},
    ]
    return build_graph(validate(document))


def test_each_node_carries_its_connectors_facts():
    graph = _graph()
    assert graph.facts["start"] == NodeFacts(is_trigger=True, inline=True)
    assert graph.facts["route"].ports == ("france", "germany", "elsewhere")
    assert graph.facts["route"].dynamic_ports and graph.facts["route"].inline
    assert graph.facts["shape"] == NodeFacts(inline=True)
    assert graph.facts["call"].side_effect == "unsafe" and not graph.facts["call"].inline
    charge = graph.facts["charge"]
    assert (charge.side_effect, charge.has_own_undo) == ("compensatable", True)


def test_a_connectors_own_undo_is_a_step_with_one_port_run_by_its_compensate():
    graph = _graph()
    undo = graph.facts["charge~undo"]
    assert (undo.ports, undo.side_effect, undo.is_trigger) == (("out",), "compensatable", False)
    runner = connector_of(graph, "charge~undo")
    assert isinstance(runner, connectors.CompensationStep)
    assert runner.inner.key == "payments.charge"
    assert connector_of(graph, "charge").key == "payments.charge"


def test_a_version_whose_connector_is_not_installed_still_loads():
    """Its runs' pages and a rebuild need the graph; only running the step
    needs the connector."""
    document = validate(chain(transform("a", v=1)))
    document["nodes"][1]["type"] = "retired.connector"
    graph = build_graph(document)
    assert graph.facts["a"] == NodeFacts(ports=(), installed=False)
    assert graph.order == ["start", "a"]
