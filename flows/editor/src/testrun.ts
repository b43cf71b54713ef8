// Pure helpers of test runs in the editor: the sample input box, the
// painted states, and the pinned outputs kept in the draft's `pinned`.
import type { Catalogue } from "./connections";
import type { Graph, Json, StepStatus } from "./types";

export interface TestStep {
  node: string;
  connector: string;
  status: StepStatus;
  attempts: number;
  port: string;
  input: Json;
  output: Json;
  error: string;
  carried_from: string | null;
}

export interface TestRun {
  id: number;
  status: string;
  settled: boolean;
  is_test: boolean;
  input: Json;
  output: Json;
  error: string;
  started_by: string;
  url: string;
  steps: TestStep[];
}

export type Pinned = Record<string, Json>;

/** The sample input typed in the box, or why it is not JSON. */
export function parseSampleInput(text: string): { value: Json } | { error: string } {
  if (!text.trim()) return { value: {} };
  try {
    return { value: JSON.parse(text) as Json };
  } catch (error) {
    return { error: `The sample input is not JSON: ${(error as Error).message}` };
  }
}

/** The box's first content: the last test run's input, or what the
 * draft's trigger gives a run (a webhook delivers body, query, headers). */
export function defaultSampleInput(graph: Graph, catalogue: Catalogue, last: Json | undefined): string {
  if (last !== undefined && last !== null) return JSON.stringify(last, null, 2);
  const trigger = graph.nodes.find((n) => catalogue.get(n.type)?.is_trigger);
  if (trigger?.type === "trigger.webhook") return JSON.stringify({ body: {}, query: {}, headers: {} }, null, 2);
  return "{}";
}

/** Each node's state in a test run, for painting the canvas. */
export function statusByNode(run: TestRun | null): Map<string, StepStatus> {
  return new Map((run?.steps ?? []).map((s) => [s.node, s.status]));
}

/** Pins of nodes that still exist; undefined when none (the graph omits the key). */
export function keptPins(pinned: Pinned, nodeIds: Iterable<string>): Pinned | undefined {
  const ids = new Set(nodeIds);
  const kept = Object.fromEntries(Object.entries(pinned).filter(([id]) => ids.has(id)));
  return Object.keys(kept).length ? kept : undefined;
}

/** A renamed node keeps its pin under its new id. */
export function renamePin(pinned: Pinned, from: string, to: string): Pinned {
  if (!(from in pinned) || from === to) return pinned;
  const { [from]: value, ...rest } = pinned;
  return { ...rest, [to]: value };
}

export function pin(pinned: Pinned, node: string, output: Json): Pinned {
  return { ...pinned, [node]: output };
}

export function unpin(pinned: Pinned, node: string): Pinned {
  const { [node]: _gone, ...rest } = pinned;
  return rest;
}

/** Words for a 409 of nodes with side effects, for the confirm dialog. */
export function sideEffectWords(nodes: { node: string; type: string; side_effect: string }[]): string[] {
  return nodes.map((n) => `${n.node} (${n.type}): ${n.side_effect.replace("_", " ")}`);
}
