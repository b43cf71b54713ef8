// Where a read-only diagram puts its nodes. A graph written as JSON (the
// advanced view, an import, the demo) often has no positions, and publishing
// stores the missing ones as 0,0: drawn as they stand, its nodes would lie
// on top of each other. Such a graph is laid out left to right instead; one
// drawn in the editor keeps the places its author gave its nodes.
import { layout } from "./layout";
import type { Graph } from "./types";

// Closer than this, two nodes' boxes overlap (a node is about 170-260 by 50-90).
const MIN_DX = 180;
const MIN_DY = 70;

export function overlapping(graph: Graph): boolean {
  const points = graph.nodes.map((n) => n.position);
  if (points.some((p) => !p)) return true;
  for (let i = 0; i < points.length; i++) {
    for (let j = i + 1; j < points.length; j++) {
      if (Math.abs(points[i]!.x - points[j]!.x) < MIN_DX && Math.abs(points[i]!.y - points[j]!.y) < MIN_DY) return true;
    }
  }
  return false;
}

export function placed(graph: Graph): Graph {
  if (!overlapping(graph)) return graph;
  const positions = layout(graph);
  return { ...graph, nodes: graph.nodes.map((n) => ({ ...n, position: positions.get(n.id) ?? n.position })) };
}
