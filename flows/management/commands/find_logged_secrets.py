"""List the events that hold a secret written into a config (a flow's
graph, a step's input, an edited replay input). The hash chain cannot be
rewritten, so each secret found must be rotated at its issuer and the new
value kept in a credential."""

from django.core.management.base import BaseCommand

from flows.secrets import graph_secret_paths, secret_paths
from runs.ground.models import Event

# Where configs are recorded: flow graphs, and a run's rendered step inputs.
GRAPH_EVENTS = ("flow.draft_saved", "flow.published", "flow.secrets_moved")
INPUT_EVENTS = ("step.started", "step.replayed")


def findings(event: Event) -> list[str]:
    payload = event.payload if isinstance(event.payload, dict) else {}
    if event.type in GRAPH_EVENTS:
        graphs = [payload.get("graph"), payload.get("draft")]
        graphs += [v.get("graph") for v in payload.get("versions", []) if isinstance(v, dict)]
        return [f"node {node} {path}" for g in graphs for node, path in graph_secret_paths(g)]
    if event.type in INPUT_EVENTS:
        node = payload.get("node", "?")
        found = []
        for field in ("input", "edited_input"):
            found += [f"node {node} {p}" for p in secret_paths(payload.get(field), field)]
        return found
    return []


class Command(BaseCommand):
    help = "Find events that hold a secret typed into a config, and say to rotate it."

    def handle(self, *args, **options):
        events = Event.objects.filter(type__in=GRAPH_EVENTS + INPUT_EVENTS).order_by("id")
        hits = 0
        for event in events.iterator():
            for where in findings(event):
                hits += 1
                self.stdout.write(f"{event.stream}#{event.seq} {event.type} ({event.actor}, "
                                  f"{event.occurred_at:%Y-%m-%d %H:%M}): {where}")  # fmt: skip
        if not hits:
            self.stdout.write("No event holds a secret typed into a config.")
            return
        self.stdout.write(
            f"\n{hits} secret value(s) are recorded in the audit log. The log is hash-chained "
            "and cannot be rewritten: rotate each of these secrets at its issuer now, store the "
            "new value as a credential (Credentials page), and name that credential in the "
            "step. Run `manage.py migrate` first so old payments and inventory keys move into "
            "credentials."
        )
