// Which connections and drops the canvas refuses, and why: the same rules the
// server's validation applies (flows/graph.py), checked before they happen.
import { portsFor } from "./graph";
import type { ConnectorInfo, Graph } from "./types";

export interface Connection {
  source: string;
  target: string;
  sourceHandle?: string | null;
}

export type Catalogue = Map<string, ConnectorInfo>;

/** Why a new edge may not be drawn, or null when it may. */
export function connectionProblem(graph: Graph, catalogue: Catalogue, c: Connection): string | null {
  const source = graph.nodes.find((n) => n.id === c.source);
  const target = graph.nodes.find((n) => n.id === c.target);
  if (!source) return `there is no node “${c.source}”`;
  if (!target) return `there is no node “${c.target}”`;
  if (source.id === target.id) return "a node cannot connect to itself";
  const targetInfo = catalogue.get(target.type);
  if (targetInfo?.is_trigger) return `“${target.id}” is a trigger: a trigger starts the flow and takes no input`;
  const port = c.sourceHandle || "out";
  const ports = portsFor(source, catalogue.get(source.type));
  if (!ports.includes(port)) {
    return `“${source.id}” has no port “${port}” (ports: ${ports.join(", ")})`;
  }
  if (graph.edges.some((e) => e.from === source.id && (e.from_port ?? "out") === port && e.to === target.id)) {
    return `“${source.id}” is already connected to “${target.id}”`;
  }
  const loop = pathBetween(graph, target.id, source.id);
  if (loop) return `this would make a cycle: ${[...loop, target.id].join(" → ")}`;
  return null;
}

/** A path from -> ... -> to along the edges, or null. */
export function pathBetween(graph: Graph, from: string, to: string): string[] | null {
  const previous = new Map<string, string>();
  const queue = [from];
  const seen = new Set([from]);
  while (queue.length) {
    const current = queue.shift()!;
    if (current === to) {
      const path = [to];
      while (path[0] !== from) path.unshift(previous.get(path[0])!);
      return path;
    }
    for (const edge of graph.edges) {
      if (edge.from === current && !seen.has(edge.to)) {
        seen.add(edge.to);
        previous.set(edge.to, current);
        queue.push(edge.to);
      }
    }
  }
  return null;
}

/** Why a connector may not be dropped onto the canvas, or null. */
export function dropProblem(graph: Graph, catalogue: Catalogue, key: string): string | null {
  const info = catalogue.get(key);
  if (!info) return `connector “${key}” is not installed`;
  if (info.is_trigger) {
    const existing = graph.nodes.find((n) => catalogue.get(n.type)?.is_trigger);
    if (existing) return `a flow has exactly one trigger, and “${existing.id}” is already one`;
  }
  return null;
}
