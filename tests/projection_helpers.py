"""The projected rows of every table ``rebuild_projections`` derives, for
tests that compare the live rows with their rebuild."""

from approvals.models import ApprovalTask, BusinessCalendar
from connectors.outbound.models import Breaker
from connectors.triggers.models import Backfill, Receipt
from flows.alerts.models import Incident, Outbox
from flows.models import DraftSnapshot, Flow, FlowVersion, Team
from runs.models import DeadLetterAssignment, DeadLetterNote, Run, Step, Timer

# Columns no event records, documented as such on their models: surrogate
# ids of rows keyed otherwise, and the recovery sweep's re-send bookkeeping.
NOT_PROJECTED = {
    Step: {"id", "redispatched_at", "redispatches"},
    Timer: {"id"},
    ApprovalTask: {"id"},
    FlowVersion: {"id"},  # runs pin a version by its number
    Team.members.through: {"id"},
    BusinessCalendar: {"id"},  # one per group, found by its group
    DraftSnapshot: {"id"},  # test runs pin a snapshot by its graph hash
    DeadLetterAssignment: {"id"},  # one per dead letter, found by (run, node)
    DeadLetterNote: {"id"},  # found by (run, node, seq)
    Outbox: {"enqueued_at"},  # the sweep's bookkeeping
    Receipt: {"id"},  # one per (flow, source, key)
}
ORDER = {
    Run: ["id"],
    Step: ["run_id", "position", "node_id"],
    Timer: ["run_id", "node_id", "attempt", "kind"],
    ApprovalTask: ["run_id", "node_id", "attempt"],
    Flow: ["id"],
    FlowVersion: ["flow_id", "number"],
    DraftSnapshot: ["flow_id", "graph_hash"],
    Breaker: ["pk"],
    Team: ["id"],
    Team.members.through: ["team_id", "user_id"],
    BusinessCalendar: ["group_id"],
    DeadLetterAssignment: ["run_id", "node_id"],
    DeadLetterNote: ["run_id", "node_id", "seq"],
    Incident: ["id"],
    Outbox: ["id"],
    Receipt: ["flow_id", "source", "key"],
    Backfill: ["id"],
}


def projected_rows() -> dict[str, list[dict]]:
    """Every projected column of every row, per table."""
    snapshot = {}
    for model, order in ORDER.items():
        skip = NOT_PROJECTED.get(model, set())
        columns = [f.attname for f in model._meta.concrete_fields if f.attname not in skip]
        snapshot[model.__name__] = list(model.objects.order_by(*order).values(*columns))
    return snapshot


def differences(live: list[dict], rebuilt: list[dict]) -> list:
    """(row, column, live value, rebuilt value) for each cell that differs."""
    if len(live) != len(rebuilt):
        return [("rows", len(live), len(rebuilt))]
    return [
        (index, column, value, rebuilt[index][column])
        for index, row in enumerate(live)
        for column, value in row.items()
        if rebuilt[index][column] != value
    ]
