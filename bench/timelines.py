"""Timelines of the runs a drill found late or stuck: what each waited for.

Printed from the drill's database (kept with ``--keep-db``) once the drill has
settled: the run's events in stream order with the time each was appended,
its step rows (status, attempt, lease and redispatch columns) and its timers.
Times are seconds relative to a reference instant (the last kill), so a row
reads "this happened 3.2 s after the last kill"."""

import datetime as dt


def _rel(moment: dt.datetime | None, ref: dt.datetime) -> str:
    if moment is None:
        return "-"
    return f"{(moment - ref).total_seconds():+.2f}"


def _errors(errors: list) -> list:
    return [e.get("error", e) if isinstance(e, dict) else e for e in errors][-3:]


def late_runs(run_ids: list[int], ref: dt.datetime, limit: int) -> list[int]:
    """Runs not settled, then the runs that finished last after ``ref``."""
    from bench.common import SETTLED_RUN
    from runs.models import Run

    rows = Run.objects.filter(pk__in=run_ids)
    stuck = list(rows.exclude(status__in=SETTLED_RUN).values_list("pk", flat=True))
    late = rows.filter(status__in=SETTLED_RUN, finished_at__gt=ref).order_by("-finished_at")
    return (stuck + list(late.values_list("pk", flat=True)))[:limit]


def timeline(run_id: int, ref: dt.datetime) -> list[str]:
    from runs.ground.models import Event
    from runs.models import Run, Step, Timer

    run = Run.objects.get(pk=run_id)
    lines = [f"run {run_id} status={run.status} created={_rel(run.created_at, ref)} "
             f"finished={_rel(run.finished_at, ref)}"]  # fmt: skip
    for event in Event.objects.filter(stream=run.stream).order_by("seq"):
        node = event.payload.get("node", "")
        attempt = event.payload.get("attempt", "")
        lines.append(f"  ev {event.seq:>3} {_rel(event.occurred_at, ref):>8} {event.type} "
                     f"{node} {attempt} {event.actor}".rstrip())  # fmt: skip
    for step in Step.objects.filter(run_id=run_id).order_by("position"):
        lines.append(
            f"  step {step.node_id} {step.status} attempt={step.attempt} "
            f"scheduled={_rel(step.scheduled_at, ref)} started={_rel(step.started_at, ref)} "
            f"lease_until={_rel(step.lease_until, ref)} due={_rel(step.due_at, ref)} "
            f"finished={_rel(step.finished_at, ref)} "
            f"redispatched={_rel(step.redispatched_at, ref)} x{step.redispatches} "
            f"wait={step.wait_reason or '-'} errors={_errors(step.errors)}"
        )
    for timer in Timer.objects.filter(run_id=run_id):
        lines.append(f"  timer {timer.node_id} {timer.kind} attempt={timer.attempt} "
                     f"due={_rel(timer.due_at, ref)}")  # fmt: skip
    return lines


def print_late(run_ids: list[int], ref: dt.datetime, limit: int = 10) -> None:
    for run_id in late_runs(run_ids, ref, limit):
        print("\n".join(timeline(run_id, ref)))
