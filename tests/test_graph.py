"""Graph validation: every message names the node and the field."""

import pytest

from flows import graph as graphs
from tests.engine_helpers import chain, transform

UNDO_READING_B = {"type": "transform", "config": {"fields": {"x": "{{ steps.b.output }}"}}}


def errors_of(document) -> list[str]:
    with pytest.raises(graphs.InvalidGraph) as caught:
        graphs.validate(document)
    return [str(e) for e in caught.value.errors]


def test_a_valid_graph_is_normalised_with_defaults():
    graph = graphs.validate(chain(transform("a", x=1)))
    node = graph["nodes"][1]
    assert node["retry"] == graphs.DEFAULT_RETRY and node["position"] == {"x": 0, "y": 0}
    assert graph["edges"] == [{"from": "start", "from_port": "out", "to": "a"}]


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda g: g["nodes"].append({"id": "start2", "type": "trigger.manual"}),
         "exactly one trigger, this one has 2"),
        (lambda g: g["edges"].append({"from": "a", "to": "ghost"}),
         "to “ghost” is not a node (dangling edge)"),
        (lambda g: g["nodes"].append(transform("island", x=1)),
         "node “island”: cannot be reached from the trigger"),
        (lambda g: g["edges"].append({"from": "b", "to": "a"}), "these nodes form a cycle: a, b"),
        (lambda g: g["nodes"].append({"id": "x", "type": "teleport"}),
         "node “x”, field “type”: unknown connector type “teleport”"),
        (lambda g: g["nodes"][1].update(config={"fieldz": {}}),
         "node “a”, field “config.fields”: Field required"),
        (lambda g: g["nodes"][1].update(config={"fields": {"x": "{{ trigger.( }}"}}),
         "node “a”, field “config”: expression syntax"),
        (lambda g: g["edges"].append({"from": "a", "from_port": "true", "to": "b"}),
         "node “a”, field “edges[2]”: has no port “true”"),
        (lambda g: g["nodes"][1].update(id="Bad Id"), "node “Bad Id”, field “id”"),
        (lambda g: g["nodes"][1].update(retry={"max_attempts": 0}),
         "node “a”, field “retry.max_attempts”: 0 is less than the minimum of 1"),
        (lambda g: g["nodes"][2].update(config={"fields": {"y": "{{ steps.nope.output }}"}}),
         "node “b”: steps.nope is not a step before this node (earlier steps: start, a);"
         " no node is called nope"),
        (lambda g: g["nodes"][1].update(compensation={"type": "transform", "config": {}}),
         "node “a”, field “compensation.config.fields”: Field required"),
        (lambda g: g["nodes"][1].update(compensation={"type": "teleport"}),
         "node “a”, field “compensation.type”: unknown connector type"),
        (lambda g: g["nodes"][1].update(compensation=UNDO_READING_B),
         "node “a”: steps.b is not a step before this node (earlier steps: start, a)"),
    ],
)  # fmt: skip
def test_invalid_graphs_are_explained(mutate, expected):
    document = chain(transform("a", x=1), transform("b", y=2))
    mutate(document)
    assert any(expected in message for message in errors_of(document)), errors_of(document)


def test_a_reference_must_run_before_on_every_path_or_have_a_default():
    document = chain({"id": "check", "type": "branch", "config": {"condition": True}})
    document["nodes"] += [transform("yes", v=1), transform("no", v=2)]
    document["nodes"].append(transform("join", v="{{ steps.yes.output.v }}"))
    document["edges"] += [
        {"from": "check", "from_port": "true", "to": "yes"},
        {"from": "check", "from_port": "false", "to": "no"},
        {"from": "yes", "to": "join"},
        {"from": "no", "to": "join"},
    ]
    assert any(
        "node “join”: steps.yes does not run before this node on every path"
        " (earlier steps: start, check); give a default" in m
        for m in errors_of(document)
    )
    document["nodes"][-1] = transform("join", v="{{ steps.yes.output.v | default(0) }}")
    graphs.validate(document)
    document["nodes"][-1] = transform("join", v="{{ steps.check.output.result }}")
    graphs.validate(document)  # check dominates join


def test_not_a_graph_at_all():
    assert errors_of([1, 2]) == ["the graph must be a JSON object with nodes and edges"]
    assert any("'nodes' is a required property" in m for m in errors_of({"edges": []}))


def test_canonical_hash_ignores_key_order():
    a = graphs.validate(chain(transform("a", x=1, y=2)))
    b = graphs.validate(
        {"edges": [{"to": "a", "from": "start"}],
         "nodes": [{"type": "trigger.manual", "id": "start"}, transform("a", y=2, x=1)]}
    )  # fmt: skip
    assert graphs.graph_hash(a) == graphs.graph_hash(b)
