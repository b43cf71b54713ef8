// Renaming a node rewrites what refers to it: its edges and every
// `steps.<old>` (or steps['old']) inside the expressions of other nodes.
import type { Graph, Json } from "./types";

export const NODE_ID = /^[a-z][a-z0-9_]{0,62}$/;

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** Rewrites references inside {{ … }} and {% … %} only: plain text that
 * happens to say "steps.x" is not an expression. */
export function rewriteText(text: string, from: string, to: string): string {
  const dotted = new RegExp(`\\bsteps\\.${escape(from)}(?![A-Za-z0-9_])`, "g");
  const indexed = new RegExp(`\\bsteps\\[(['"])${escape(from)}\\1\\]`, "g");
  return text.replace(/(\{\{|\{%)([\s\S]*?)(\}\}|%\})/g, (_m, open: string, body: string, close: string) =>
    open + body.replace(dotted, `steps.${to}`).replace(indexed, `steps[$1${to}$1]`) + close,
  );
}

export function rewriteValue(value: Json, from: string, to: string): Json {
  if (typeof value === "string") return rewriteText(value, from, to);
  if (Array.isArray(value)) return value.map((v) => rewriteValue(v, from, to));
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, rewriteValue(v, from, to)]));
  }
  return value;
}

/** Why `to` cannot be the new id, or null. */
export function renameProblem(graph: Graph, from: string, to: string): string | null {
  if (!NODE_ID.test(to)) return "an id starts with a lowercase letter, then lowercase letters, digits or _ (at most 63)";
  if (to !== from && graph.nodes.some((n) => n.id === to)) return `there is already a node “${to}”`;
  return null;
}

export function renameNode(graph: Graph, from: string, to: string): Graph {
  return {
    ...graph,
    nodes: graph.nodes.map((n) => {
      const renamed = { ...n, id: n.id === from ? to : n.id };
      if (n.config) renamed.config = rewriteValue(n.config, from, to) as typeof n.config;
      if (n.compensation) renamed.compensation = rewriteValue(n.compensation, from, to);
      return renamed;
    }),
    edges: graph.edges.map((e) => ({ ...e, from: e.from === from ? to : e.from, to: e.to === from ? to : e.to })),
    ...(graph.settings ? { settings: rewriteValue(graph.settings, from, to) as typeof graph.settings } : {}),
  };
}
