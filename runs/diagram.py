"""A run's diagram: its pinned version's graph, each node painted by the
state of its step. The run page paints in the browser from the step rows
(flows/editor/src/nodeStates.ts); the API answers with both the rows and
the painting done here. Both follow the same rules, held to the shared
cases in flows/editor/src/nodeStates.cases.json."""

from collections.abc import Iterable

from flows.diagram import diagram_config
from flows.models import DraftSnapshot, FlowVersion
from runs.decider import (
    COMPENSATED,
    COMPENSATING,
    DEAD_LETTERED,
    FAILED,
    SUCCEEDED,
    base_node,
)
from runs.models import Run, Step

# The id of the element, inside the run page's live fragment, whose
# data-states carries the step rows the diagram paints from (diagram.tsx).
STATES_ELEMENT = "run-diagram-states"

# A compensation that is stuck or abandoned is the worst news on its node:
# it is painted over the node's own state, which then reads "compensating".
UNDO_OVERRIDES = {DEAD_LETTERED, FAILED}


def step_rows(steps: Iterable[Step]) -> list[dict]:
    return [
        {
            "node": step.node_id,
            "status": step.status,
            "attempt": step.attempt,
            "iterations": len(step.iterations or {}),
        }
        for step in steps
    ]


def _words(status: str) -> str:
    return status.replace("_", " ", 1)


def _own_detail(row: dict) -> list[str]:
    parts = []
    if row["attempt"] > 1:
        parts.append(f"attempt {row['attempt']}")
    if row["iterations"] > 0:
        plural = "" if row["iterations"] == 1 else "s"
        parts.append(f"{row['iterations']} iteration{plural} done")
    return parts


def node_states(rows: list[dict]) -> dict[str, dict]:
    """{node: {"status", "detail"}}: a node takes its step's state; its
    compensation (``<node>~undo``) adds its own state to the detail, and
    paints the node when it is dead-lettered or failed."""
    own = {row["node"]: row for row in rows if base_node(row["node"])[1] == "do"}
    undo = {base_node(row["node"])[0]: row for row in rows if base_node(row["node"])[1] == "undo"}
    states = {}
    for node in dict.fromkeys([*own, *undo]):
        row, compensation = own.get(node), undo.get(node)
        parts = _own_detail(row) if row else []
        if row:
            status = row["status"]
        elif compensation is not None:  # never expected: the engine moves the node itself
            status = COMPENSATED if compensation["status"] == SUCCEEDED else COMPENSATING
        else:
            continue
        if compensation and compensation["status"] != SUCCEEDED:
            again = f" (attempt {compensation['attempt']})" if compensation["attempt"] > 1 else ""
            parts.append(f"undo {_words(compensation['status'])}{again}")
            if compensation["status"] in UNDO_OVERRIDES:
                status = compensation["status"]
        states[node] = {"status": status, "detail": " · ".join(parts)}
    return states


def run_steps(run: Run) -> list[Step]:
    return list(Step.objects.filter(run=run).order_by("position"))


def run_graph_config(run: Run) -> dict:
    """The graph the run is pinned to, for drawing (immutable, so the page
    sends it once; the live updates carry only the step rows)."""
    return diagram_config(run_graph_document(run))


def run_graph_document(run: Run) -> dict:
    """The graph document a run ran: its version's, or for a test run the
    draft snapshot it pinned."""
    if run.test_snapshot:
        return DraftSnapshot.objects.get(flow_id=run.flow_id, graph_hash=run.test_snapshot).graph
    return FlowVersion.objects.get(flow_id=run.flow_id, number=run.version_number).graph
