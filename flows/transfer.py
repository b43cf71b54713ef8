"""Import and export of flows as JSON files.

People and teams are referred to by name, so a file moves between
installations. The export is canonical (sorted keys, two-space indent, a
final newline): exporting an imported file gives the canonical text of that
file, byte for byte.
"""

import json

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction

from flows import graph as graphs
from flows import services
from flows.models import Flow, Team
from runs.ground import plainjson

FORMAT = "ledgerflow/flow@1"
FACTS = [
    "name", "slug", "kind", "external_platform", "external_url", "purpose", "criticality",
    "runbook", "failure_mode", "alert_to", "review_cadence_days", "tags", "external_systems",
]  # fmt: skip
DEFAULT_FACTS = {**services.DEFAULT_FACTS, "owner": None}


class TransferError(ValueError):
    pass


def canonical_text(document: dict) -> str:
    return json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def canonical_document(document: dict) -> dict:
    """The file with defaults filled and the graph normalised."""
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise TransferError(f"not a Ledgerflow flow file (expected format {FORMAT!r})")
    problem = plainjson.problem(document)
    if problem:
        raise TransferError(f"the file cannot be stored: {problem}")
    if not isinstance(document.get("flow", {}), dict):
        raise TransferError("flow must be a JSON object of the flow's facts")
    facts = {**DEFAULT_FACTS, **document.get("flow", {})}
    unknown = set(facts) - set(FACTS) - {"owner", "team"}
    if unknown:
        raise TransferError(f"unknown flow fields: {', '.join(sorted(unknown))}")
    for required in ("name", "slug"):
        if not facts.get(required):
            raise TransferError(f"flow.{required} is required")
    _check_facts(facts)
    result = {"format": FORMAT, "flow": facts}
    if document.get("graph") is not None:
        try:
            result["graph"] = graphs.validate(document["graph"])
        except graphs.InvalidGraph as exc:
            raise TransferError(f"graph: {exc}") from None
    return result


LIST_FACTS = ("tags", "external_systems")


def _check_facts(facts: dict) -> None:
    """The rules of the flow's own fields (types, lengths, choices, slug
    form), so a bad file is refused with a reason, not a database error."""
    for name in FACTS:
        value = facts[name]
        if name in LIST_FACTS:
            ok = isinstance(value, list) and all(isinstance(item, str) for item in value)
        elif name == "review_cadence_days":
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, str)
        if not ok:
            raise TransferError(f"flow.{name} has the wrong type ({type(value).__name__})")
    for name in ("owner", "team"):
        if facts.get(name) is not None and not isinstance(facts[name], str):
            raise TransferError(f"flow.{name} must be a name or null")
    try:
        Flow(**{name: facts[name] for name in FACTS}).clean_fields(
            exclude=["created_at", "updated_at", "owner", "team"]
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"flow.{field}: {' '.join(messages)}" for field, messages in exc.message_dict.items()
        )
        raise TransferError(problems) from None


def export_flow(flow: Flow) -> str:
    facts = {name: getattr(flow, name) for name in FACTS}
    facts["owner"] = flow.owner.username if flow.owner else None
    facts["team"] = flow.team.name if flow.team else None
    document = {"format": FORMAT, "flow": facts}
    version = flow.versions.order_by("-number").first()
    if version is not None:
        document["graph"] = version.graph
    return canonical_text(document)


@transaction.atomic
def import_flow(document: dict, *, actor) -> Flow:
    document = canonical_document(document)
    facts = dict(document["flow"])
    owner_name, team_name = facts.pop("owner"), facts.pop("team")
    data = dict(facts)
    data["owner"] = _user(owner_name)
    data["team"] = _team(team_name)
    flow = Flow.objects.filter(slug=facts["slug"]).first()
    if flow is None:
        flow = services.flow_create(actor=actor, data=data)
    else:
        flow = services.flow_update(flow=flow, actor=actor, data=data)
    graph = document.get("graph")
    if graph is not None:
        latest = flow.versions.order_by("-number").first()
        if latest is None or latest.graph_hash != graphs.graph_hash(graph):
            services.flow_save_draft(flow=flow, actor=actor, graph=graph)
            services.flow_publish(flow=flow, actor=actor, note="imported")
    flow.refresh_from_db()
    return flow


def _user(username):
    if username is None:
        return None
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise TransferError(f"owner {username!r} is not a user here")
    return user


def _team(name):
    if name is None:
        return None
    team = Team.objects.filter(name=name).first()
    if team is None:
        raise TransferError(f"team {name!r} does not exist here")
    return team
