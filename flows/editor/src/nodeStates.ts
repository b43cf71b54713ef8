// A run's step rows -> the state each node of its graph is painted with.
// The server applies the same rules (runs/diagram.py node_states); both are
// held to the cases in nodeStates.cases.json.
import type { StepStatus } from "./types";

/** One step row as the run page and GET /api/v1/runs/{id}/diagram give it. */
export interface StepRow {
  node: string;
  status: StepStatus;
  attempt: number;
  // A loop's finished iterations (the row's `iterations`, counted).
  iterations: number;
}

export interface NodeState {
  status: StepStatus;
  // What the status alone does not say: a retry's attempt, a loop's progress,
  // the state of the node's compensation.
  detail: string;
}

// Must match runs/decider.py UNDO_SUFFIX: a node's compensation is a step of
// its own named "<node>~undo".
export const UNDO_SUFFIX = "~undo";

/** "charge~undo" -> { node: "charge", phase: "undo" }. */
export function baseNode(stepNode: string): { node: string; phase: "do" | "undo" } {
  return stepNode.endsWith(UNDO_SUFFIX)
    ? { node: stepNode.slice(0, -UNDO_SUFFIX.length), phase: "undo" }
    : { node: stepNode, phase: "do" };
}

// A compensation that is stuck or abandoned is the worst news on its node:
// it is painted over the node's own state, which then reads "compensating".
const UNDO_OVERRIDES: ReadonlySet<StepStatus> = new Set(["dead_lettered", "failed"]);

const words = (status: StepStatus) => status.replace("_", " ");

function doDetail(row: StepRow): string[] {
  const parts: string[] = [];
  if (row.attempt > 1) parts.push(`attempt ${row.attempt}`);
  if (row.iterations > 0) parts.push(`${row.iterations} iteration${row.iterations === 1 ? "" : "s"} done`);
  return parts;
}

export function nodeStates(rows: StepRow[]): Map<string, NodeState> {
  const own = new Map(rows.filter((r) => baseNode(r.node).phase === "do").map((r) => [r.node, r]));
  const undo = new Map(rows.filter((r) => baseNode(r.node).phase === "undo").map((r) => [baseNode(r.node).node, r]));
  const states = new Map<string, NodeState>();
  for (const node of new Set([...own.keys(), ...undo.keys()])) {
    const row = own.get(node);
    const compensation = undo.get(node);
    const parts = row ? doDetail(row) : [];
    // The engine moves a node to compensating/compensated itself; without its
    // row (never expected) the undo step's own state tells as much.
    let status: StepStatus = row?.status ?? (compensation?.status === "succeeded" ? "compensated" : "compensating");
    if (compensation && compensation.status !== "succeeded") {
      parts.push(`undo ${words(compensation.status)}${compensation.attempt > 1 ? ` (attempt ${compensation.attempt})` : ""}`);
      if (UNDO_OVERRIDES.has(compensation.status)) status = compensation.status;
    }
    states.set(node, { status, detail: parts.join(" · ") });
  }
  return states;
}
