"""Building published flows for engine tests."""

from flows import services
from flows.models import Flow
from tests.conftest import flow_data

# What activation asks of a flow: only active flows start runs.
READY = {"runbook": "Replay the dead letter.", "failure_mode": "Orders are not fulfilled."}


def publish(actor, graph: dict, slug: str = "engine-flow", active: bool = True, **facts) -> Flow:
    """Publish ``graph`` as the flow's next version; a new flow gets its
    owner, runbook and failure mode and is activated unless told otherwise."""
    flow = Flow.objects.filter(slug=slug).first()
    if flow is None:
        data = flow_data(slug=slug, name=slug, **{"owner": actor, **READY, **facts})
        flow = services.flow_create(actor=actor, data=data)
    services.flow_save_draft(flow=flow, actor=actor, graph=graph)
    services.flow_publish(flow=flow, actor=actor)
    flow.refresh_from_db()
    if active and flow.status == "draft":
        flow = services.flow_transition(flow=flow, actor=actor, action="activate")
    return flow


def activate(flow, actor) -> Flow:
    """A flow made outside ``publish`` (an import, a fixture) put in service."""
    if flow.status == "draft":
        flow = services.flow_transition(flow=flow, actor=actor, action="activate")
    return flow


def chain(*nodes: dict, trigger: str = "start") -> dict:
    """A linear graph: trigger -> nodes[0] -> nodes[1] ..."""
    all_nodes = [{"id": trigger, "type": "trigger.manual"}, *nodes]
    edges = [
        {"from": a["id"], "to": b["id"]} for a, b in zip(all_nodes, all_nodes[1:], strict=False)
    ]
    return {"nodes": all_nodes, "edges": edges}


def transform(node_id: str, **fields) -> dict:
    return {"id": node_id, "type": "transform", "config": {"fields": fields}}
