// The publish diff, as the server computes it (flows/diff.py): nodes added,
// removed and changed with their changed fields; positions are not changes.
import type { Graph, GraphDiff, GraphNode, Json, NodeChange } from "./types";

export const DEFAULT_RETRY = {
  max_attempts: 3,
  initial_seconds: 1.0,
  multiplier: 2.0,
  max_seconds: 300.0,
  jitter: 0.2,
};

const NODE_FIELDS = ["type", "retry", "on_failure", "compensation", "disabled"] as const;

function normalNode(node: GraphNode): Record<string, Json> {
  const normal: Record<string, Json> = {
    type: node.type,
    config: node.config ?? {},
    retry: { ...DEFAULT_RETRY, ...(node.retry ?? {}) },
  };
  if (node.on_failure && node.on_failure !== "dead_letter") normal.on_failure = node.on_failure;
  if (node.compensation) normal.compensation = node.compensation;
  if (node.disabled) normal.disabled = true;
  return normal;
}

/** Deep equality of JSON values, key order ignored. */
export function same(a: Json | undefined, b: Json | undefined): boolean {
  if (a === b) return true;
  if (a === null || b === null || a === undefined || b === undefined) return false;
  if (typeof a !== "object" || typeof b !== "object") return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a) && Array.isArray(b)) {
    return a.length === b.length && a.every((v, i) => same(v, b[i]));
  }
  const ao = a as Record<string, Json>;
  const bo = b as Record<string, Json>;
  const keys = new Set([...Object.keys(ao), ...Object.keys(bo)]);
  return [...keys].every((k) => same(ao[k], bo[k]));
}

function changedFields(old: Record<string, Json>, now: Record<string, Json>): string[] {
  const fields: string[] = NODE_FIELDS.filter((f) => !same(old[f], now[f]));
  const oldConfig = (old.config ?? {}) as Record<string, Json>;
  const newConfig = (now.config ?? {}) as Record<string, Json>;
  const keys = [...new Set([...Object.keys(oldConfig), ...Object.keys(newConfig)])].sort();
  for (const key of keys) {
    if (!same(oldConfig[key], newConfig[key])) fields.push(`config.${key}`);
  }
  return fields;
}

const edgeKey = (e: Graph["edges"][number]) => `${e.from}:${e.from_port ?? "out"}->${e.to}`;

export function graphDiff(old: Graph | null, now: Graph | null): GraphDiff {
  const oldNodes = new Map((old?.nodes ?? []).map((n) => [n.id, normalNode(n)]));
  const newNodes = new Map((now?.nodes ?? []).map((n) => [n.id, normalNode(n)]));
  const changed: NodeChange[] = [];
  for (const id of [...newNodes.keys()].filter((id) => oldNodes.has(id)).sort()) {
    const fields = changedFields(oldNodes.get(id)!, newNodes.get(id)!);
    if (fields.length) changed.push({ id, fields });
  }
  const oldEdges = new Set((old?.edges ?? []).map(edgeKey));
  const newEdges = new Set((now?.edges ?? []).map(edgeKey));
  const settings = (g: Graph | null) => ({ compensate_on_cancel: true, ...(g?.settings ?? {}) });
  return {
    added: [...newNodes.keys()].filter((id) => !oldNodes.has(id)).sort(),
    removed: [...oldNodes.keys()].filter((id) => !newNodes.has(id)).sort(),
    changed,
    edges_added: [...newEdges].filter((k) => !oldEdges.has(k)).sort(),
    edges_removed: [...oldEdges].filter((k) => !newEdges.has(k)).sort(),
    settings_changed: !same(settings(old), settings(now)),
  };
}

export function isEmptyDiff(diff: GraphDiff): boolean {
  return (
    !diff.added.length &&
    !diff.removed.length &&
    !diff.changed.length &&
    !diff.edges_added.length &&
    !diff.edges_removed.length &&
    !diff.settings_changed
  );
}
