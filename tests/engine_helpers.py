"""Building published flows for engine tests."""

from flows import services
from flows.models import Flow
from tests.conftest import flow_data


def publish(actor, graph: dict, slug: str = "engine-flow", **facts) -> Flow:
    flow = Flow.objects.filter(slug=slug).first()
    if flow is None:
        flow = services.flow_create(actor=actor, data=flow_data(slug=slug, name=slug, **facts))
    services.flow_save_draft(flow=flow, actor=actor, graph=graph)
    services.flow_publish(flow=flow, actor=actor)
    flow.refresh_from_db()
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
