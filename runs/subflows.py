"""What a finished sub-flow run means for the parent step that waits on it.

The engine reads it when the child ends (``driver.signal_parent``) and the
sub-flow connector when the child finished inside ``start_run``; it lives
with the engine so that the engine never imports a connector.
"""

from typing import Any

from runs import decider
from runs.models import Run


def child_outcome(child: Run, on_failure: str) -> tuple[str, Any, str | None]:
    """(port, output, error) of the parent step for a finished child run."""
    if child.status == decider.RUN_SUCCEEDED:
        return "out", {"child_run_id": child.pk, "status": child.status,
                       "output": child.output}, None  # fmt: skip
    if on_failure == "port":
        return "failed", {"child_run_id": child.pk, "status": child.status,
                          "error": child.error}, None  # fmt: skip
    return "out", None, f"sub-flow run {child.pk} ended {child.status}: {child.error}"
