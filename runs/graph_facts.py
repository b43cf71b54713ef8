"""The decider's ``Graph`` of a published graph, with what the connector
registry says of each node resolved into it: the one place the engine asks
the registry about a node's nature, so the decider stays pure."""

from connectors import base as connectors
from runs.decider import Graph, NodeFacts


def build_graph(document: dict) -> Graph:
    """The decider's graph of a validated, normalised graph document."""
    return Graph.from_document(document, node_facts)


def node_facts(node: dict) -> NodeFacts:
    """What the node's connector means to a run. A compensation step that is
    its connector's own undo leaves by one port, "out"."""
    try:
        impl = connectors.get(node["type"])
    except connectors.UnknownConnector:
        # A version published when its connector was installed still loads
        # (its runs' pages, a rebuild); only running that step fails.
        return NodeFacts(ports=(), installed=False)
    own_undo = bool(node.get("connector_undo"))
    config = node.get("config", {})
    return NodeFacts(
        ports=("out",) if own_undo else tuple(impl.ports_for(config)),
        inline=impl.inline,
        side_effect=str(impl.side_effect_class),
        is_trigger=impl.is_trigger and not own_undo,
        dynamic_ports=type(impl).ports_for is not connectors.Connector.ports_for,
        has_own_undo=impl.has_compensate(),
    )


def connector_of(graph: Graph, node_id: str) -> connectors.Connector:
    """The connector that runs a step of ``node_id``."""
    node = graph.nodes[node_id]
    impl = connectors.get(node["type"])
    if node.get("connector_undo"):
        return connectors.compensation_step(impl)
    return impl
