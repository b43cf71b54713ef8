"""What a finished sub-flow run means for the parent step that waits on it.

The engine reads it when the child ends (``signal_parent`` below) and the
sub-flow connector when the child finished inside ``start_run``; it lives
with the engine so that the engine never imports a connector.
"""

import logging
from typing import Any

from runs import decider
from runs.models import Run, Step
from runs.services import cancel_run, signal_step
from runs.session import graph_for

log = logging.getLogger(__name__)


def child_outcome(child: Run, on_failure: str) -> tuple[str, Any, str | None]:
    """(port, output, error) of the parent step for a finished child run."""
    if child.status == decider.RUN_SUCCEEDED:
        return "out", {"child_run_id": child.pk, "status": child.status,
                       "output": child.output}, None  # fmt: skip
    if on_failure == "port":
        return "failed", {"child_run_id": child.pk, "status": child.status,
                          "error": child.error}, None  # fmt: skip
    return "out", None, f"sub-flow run {child.pk} ended {child.status}: {child.error}"


def signal_parent(child_run_id: int) -> bool:
    """Resume the step waiting for this finished sub-flow run, once. Called
    on the child's terminal commit and again by the sweep; a signal for a
    step that no longer waits changes nothing."""

    child = Run.objects.filter(pk=child_run_id).first()
    if child is None or not child.parent_run_id or child.status not in decider.RUN_TERMINAL:
        return False
    step = Step.objects.filter(run_id=child.parent_run_id, node_id=child.parent_node).first()
    if step is None or step.status != decider.WAITING or step.wait_reason != "subflow":
        return False
    if (step.output or {}).get("child_run_id") != child.pk:
        return False
    parent = Run.objects.get(pk=child.parent_run_id)
    on_failure = graph_for(parent).nodes[child.parent_node]["config"].get("on_failure", "fail")
    port, output, error = child_outcome(child, on_failure)
    try:
        signal_step(
            parent.pk, child.parent_node, step.attempt, reason="subflow", output=output,
            port=port, error=error, actor=f"run:{child.pk}",
        )  # fmt: skip
    except (decider.StaleCommand, decider.IllegalTransition) as exc:
        log.info("run %s: sub-flow result of run %s is moot: %s", parent.pk, child.pk, exc)
        return False
    return True


def cancel_orphans(parent_run_id: int) -> int:
    """Cancel the live sub-flow runs whose parent step was cancelled (the
    parent run was cancelled, compensated, or its merge went another way).
    Sent on the parent's commit; the recovery sweep repeats it."""
    cancelled = 0
    children = Run.objects.filter(parent_run_id=parent_run_id, status__in=decider.RUN_LIVE)
    for child in children:
        parent_step = Step.objects.filter(
            run_id=parent_run_id, node_id=child.parent_node, idempotency_key=child.parent_key
        ).first()
        if parent_step is None or parent_step.status != decider.CANCELLED:
            continue
        try:
            cancel_run(child.pk, actor=f"run:{parent_run_id}",
                       reason=f"run {parent_run_id} no longer waits for it")  # fmt: skip
        except decider.IllegalTransition as exc:  # compensating already, or finished
            log.info("sub-flow run %s was not cancelled: %s", child.pk, exc)
            continue
        cancelled += 1
    return cancelled
