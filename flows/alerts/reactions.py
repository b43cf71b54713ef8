"""What opens, folds and closes incidents: facts other apps record.

A projector in the ground layer's registry (AlertsConfig), so the engine,
the breakers and the approvals never import this app. It runs inside the
transaction that appended the facts: an incident opens, and its outbox row
is written, in the same commit as the failure, or not at all.

- ``step.dead_lettered`` on a run's stream: signature = the dead letter's
  error signature (connector, breaker target, normalised error; the key the
  dead-letter inbox groups by);
- ``breaker.opened`` on a breaker's stream, naming the run whose call
  opened it: signature = the breaker target;
- an approval SLA breach (``approval.escalated``, ``approval.sla_breached``,
  a decision the SLA sweep made) on a run of a *critical* flow: signature =
  the approval node. (A breach the flow's policy turns into a dead letter
  is alerted as that dead letter.)
- ``run.succeeded``: closes the flow's open incidents.

Test runs (the editor's) alert no one. An alert that cannot be recorded
(a bug, a database error) is rolled back to its savepoint and logged: it
must never undo the failure it reports, nor stop the run's commit.
"""

import logging
from collections.abc import Callable, Sequence

from django.db import transaction

from flows.alerts.models import Incident, Kind
from flows.alerts.services import Failure, failure_seen, flow_succeeded
from flows.models import Criticality, Flow
from runs import deadletters
from runs.ground.models import Event
from runs.models import Run, Step

DEAD_LETTERED = "step.dead_lettered"
SUCCEEDED = "run.succeeded"
BREAKER_OPENED = "breaker.opened"
SLA_BREACHES = ("approval.escalated", "approval.sla_breached")
DECIDED = "approval.decided"
WATCHED = (DEAD_LETTERED, SUCCEEDED, BREAKER_OPENED, *SLA_BREACHES, DECIDED)
log = logging.getLogger(__name__)
# Flows whose approval SLA breaches alert someone.
SLA_CRITICALITIES = {Criticality.CRITICAL}


def react(events: Sequence[Event]) -> None:
    runs: dict[int, Run | None] = {}
    for event in events:
        work = _work_for(event, runs)
        if work is None:
            continue
        try:
            with transaction.atomic():
                work()
        except Exception:
            log.exception("could not record the alert for %s#%s %s",
                          event.stream, event.seq, event.type)  # fmt: skip


def _work_for(event: Event, runs: dict[int, Run | None]) -> Callable[[], object] | None:
    """What ``event`` asks of the alerts, or None (read only: most events,
    a success with no incident open among them, ask nothing and pay for no
    savepoint)."""
    if event.type == BREAKER_OPENED:
        return lambda: _breaker_opened(event, runs)
    if not event.stream.startswith("run:"):
        return None
    run = _run(int(event.stream.split(":", 1)[1]), runs)
    if run is None or run.is_test:
        return None
    if event.type == DEAD_LETTERED:
        return lambda: _dead_lettered(run, event)
    if event.type == SUCCEEDED:
        if not Incident.objects.filter(flow_id=run.flow_id, closed_at__isnull=True).exists():
            return None
        return lambda: flow_succeeded(run.flow_id, run.pk)
    if event.type in SLA_BREACHES or (event.type == DECIDED and event.payload.get("breach")):
        return lambda: _sla_breached(run, event)
    return None


def _run(run_id: int, runs: dict[int, Run | None]) -> Run | None:
    if run_id not in runs:
        runs[run_id] = Run.objects.filter(pk=run_id).first()
    return runs[run_id]


def _source(event: Event) -> dict:
    return {"stream": event.stream, "seq": event.seq, "type": event.type}


def _dead_lettered(run: Run, event: Event) -> None:
    node = event.payload["node"]
    step = Step.objects.select_related("run__flow").filter(run=run, node_id=node).first()
    if step is None:
        return
    signature = deadletters.letter_of(step).signature
    where = f" on {signature.target}" if signature.target else ""
    failure_seen(Failure(
        flow_id=run.flow_id, kind=Kind.DEAD_LETTER, signature=f"dead_letter:{signature.key}",
        summary=f"{signature.connector}{where}: {signature.text}",
        detail=f"run {run.pk}, step {node}: {event.payload.get('error', '')}",
        source=_source(event),
    ))  # fmt: skip


def _breaker_opened(event: Event, runs: dict[int, Run | None]) -> None:
    run_id = event.payload.get("run_id")
    run = _run(int(run_id), runs) if run_id else None
    if run is None or run.is_test:
        return  # no run of a flow opened it (an older event, a probe by hand)
    target = event.payload["target"]
    failure_seen(Failure(
        flow_id=run.flow_id, kind=Kind.BREAKER, signature=f"breaker:{target}",
        summary=f"the circuit breaker of {target} opened after "
        f"{event.payload.get('failures', '?')} failures",
        detail=f"run {run.pk}'s call opened it; calls to {target} wait for its probe",
        source=_source(event),
    ))  # fmt: skip


def _sla_breached(run: Run, event: Event) -> None:
    flow = Flow.objects.only("criticality").get(pk=run.flow_id)
    if flow.criticality not in SLA_CRITICALITIES:
        return
    node = event.payload["node"]
    failure_seen(Failure(
        flow_id=run.flow_id, kind=Kind.SLA, signature=f"sla:{node}",
        summary=f"nobody decided approval {node} within its SLA",
        detail=f"run {run.pk}, approval {node}: {event.type}",
        source=_source(event),
    ))  # fmt: skip
