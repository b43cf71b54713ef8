// Pure helpers of the side panel: sample values for the variables list,
// expression detection, compensation choices and the disabled flag.
import { initialConfig } from "./graph";
import type { Catalogue } from "./connections";
import type { GraphNode, Json, JsonObject } from "./types";

/** What the preview API answers (flows/api.py PreviewOut). */
export interface PreviewAnswer {
  value: Json;
  error: string | null;
  context: { trigger?: Json; steps?: Record<string, { output: Json }>; run?: Json };
  sources: Record<string, string>;
}

export interface Variable {
  path: string;
  sample?: string; // the value, shortened; absent when no sample has it
}

const MAX_SAMPLE_CHARS = 60;
const MAX_DEPTH = 3;

export function isExpression(text: unknown): text is string {
  return typeof text === "string" && (text.includes("{{") || text.includes("{%"));
}

/** A value as a short line of JSON. */
export function shortJson(value: Json | undefined): string {
  const text = value === undefined ? "undefined" : JSON.stringify(value);
  return text.length > MAX_SAMPLE_CHARS ? `${text.slice(0, MAX_SAMPLE_CHARS - 1)}…` : text;
}

/** Every path of the sample down to a few levels: trigger.body.email,
 * steps.shape.output.amount. */
export function samplePaths(context: PreviewAnswer["context"]): Map<string, Json> {
  const found = new Map<string, Json>();
  const walk = (path: string, value: Json, depth: number) => {
    found.set(path, value);
    if (depth >= MAX_DEPTH || value === null || typeof value !== "object" || Array.isArray(value)) return;
    for (const [key, child] of Object.entries(value)) walk(`${path}.${key}`, child, depth + 1);
  };
  if (context.trigger !== undefined) walk("trigger", context.trigger, 0);
  for (const [node, step] of Object.entries(context.steps ?? {})) walk(`steps.${node}.output`, step.output, 0);
  return found;
}

/** The variables the graph says a node can read, each with its sample value
 * when there is one, then the sample's further fields the graph could not
 * name (a webhook body's fields, say). */
export function variablesWithSamples(names: string[], context: PreviewAnswer["context"] | null): Variable[] {
  const samples = context ? samplePaths(context) : new Map<string, Json>();
  const listed: Variable[] = names.map((path) => (samples.has(path) ? { path, sample: shortJson(samples.get(path)) } : { path }));
  const named = new Set(names);
  for (const [path, value] of samples) {
    if (!named.has(path) && path !== "trigger" && !/^steps\.[^.]+\.output$/.test(path)) {
      listed.push({ path, sample: shortJson(value) });
    }
  }
  return listed;
}

export type CompensationMode = "none" | "default" | "other";

export function compensationMode(compensation: Json | undefined): CompensationMode {
  if (compensation === undefined || compensation === null) return "none";
  if (compensation === "default") return "default";
  if (typeof compensation === "object" && !Array.isArray(compensation) && compensation.default === true) return "default";
  return "other";
}

/** The node with its compensation set as flows/graph.py accepts it: absent,
 * "default", or {"type", "config"} of another connector (retry kept). */
export function withCompensation(node: GraphNode, mode: CompensationMode, type: string | null, catalogue: Catalogue): GraphNode {
  const { compensation: old, ...rest } = node;
  if (mode === "none") return rest;
  if (mode === "default") return { ...rest, compensation: "default" };
  const previous = old && typeof old === "object" && !Array.isArray(old) ? (old as JsonObject) : {};
  if (!type) return { ...rest, compensation: { ...previous, type: "" } };
  const info = catalogue.get(type);
  const keep = previous.type === type ? previous.config : undefined;
  const spec: JsonObject = { type, config: (keep as JsonObject | undefined) ?? (info ? initialConfig(info) : {}) };
  if (previous.retry) spec.retry = previous.retry;
  return { ...rest, compensation: spec };
}

/** Connectors that may undo another node's effect: any step, not a trigger. */
export function compensators(catalogue: Catalogue): { key: string; label: string }[] {
  return [...catalogue.values()]
    .filter((c) => !c.is_trigger && c.in_palette)
    .map((c) => ({ key: c.key, label: c.label }))
    .sort((a, b) => a.label.localeCompare(b.label));
}

/** Disabled is kept only when on, so enabling leaves the graph as before. */
export function withDisabled(node: GraphNode, disabled: boolean): GraphNode {
  const { disabled: _old, ...rest } = node;
  return disabled ? { ...rest, disabled: true } : rest;
}

/** Why a node cannot be disabled, or null (mirrors flows/graph.py). */
export function disableProblem(node: GraphNode, catalogue: Catalogue, incoming: number): string | null {
  if (catalogue.get(node.type)?.is_trigger) return "a trigger cannot be disabled: a flow needs an enabled trigger";
  if (incoming > 1) return `a disabled node passes its one input through, and “${node.id}” has ${incoming}`;
  return null;
}
