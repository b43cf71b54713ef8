"""Words for a flow's events on its history panel."""

from runs.ground.models import Event

FIELD_LABELS = {
    "failure_mode": "failure mode",
    "review_cadence_days": "review cadence",
    "external_systems": "external systems",
    "external_platform": "external platform",
    "external_url": "external link",
}


def _ref_name(ref) -> str:
    if not ref:
        return "nobody"
    return ref.get("username") or ref.get("name") or str(ref.get("id"))


def describe(event: Event) -> str:
    payload = event.payload
    if event.type == "flow.created":
        return f"created “{payload['fields'].get('name', '')}”"
    if event.type == "flow.edited":
        fields = [FIELD_LABELS.get(name, name) for name in payload.get("changes", {})]
        return "edited " + ", ".join(fields)
    if event.type == "flow.owner_changed":
        return f"owner changed from {_ref_name(payload['from'])} to {_ref_name(payload['to'])}"
    if event.type in ("flow.activated", "flow.paused", "flow.retired"):
        text = event.type.split(".")[1]
        if payload.get("reason"):
            text += f": {payload['reason']}"
        return text
    if event.type == "flow.reviewed":
        text = f"review recorded for {payload['reviewed_on']}"
        if payload.get("note"):
            text += f": {payload['note']}"
        return text
    if event.type == "flow.webhook_token_issued":
        return "webhook URL issued"
    if event.type == "flow.webhook_token_rotated":
        return "webhook URL rotated (the old one no longer works)"
    if event.type == "test.snapshot_pinned":
        return f"draft snapshot {payload['graph_hash'][:10]} pinned for a test run"
    return event.type
