// "Tidy up": a layered layout, left to right. Each node's column is its
// longest distance from a node with no incoming edge; within a column the
// nodes keep their vertical order, so a tidy-up does not shuffle them.
import type { Graph } from "./types";

export const COLUMN = 280;
export const ROW = 140;

export function layout(graph: Graph): Map<string, { x: number; y: number }> {
  const level = new Map<string, number>(graph.nodes.map((n) => [n.id, 0]));
  // Longest path by relaxation; n rounds bound it even if a draft has a cycle.
  for (let round = 0; round < graph.nodes.length; round++) {
    let moved = false;
    for (const e of graph.edges) {
      if (!level.has(e.from) || !level.has(e.to)) continue;
      const candidate = level.get(e.from)! + 1;
      if (candidate > level.get(e.to)! && candidate < graph.nodes.length) {
        level.set(e.to, candidate);
        moved = true;
      }
    }
    if (!moved) break;
  }
  const columns = new Map<number, typeof graph.nodes>();
  for (const node of graph.nodes) {
    const column = level.get(node.id)!;
    columns.set(column, [...(columns.get(column) ?? []), node]);
  }
  const positions = new Map<string, { x: number; y: number }>();
  for (const [column, members] of columns) {
    const ordered = [...members].sort((a, b) => (a.position?.y ?? 0) - (b.position?.y ?? 0));
    ordered.forEach((node, row) => positions.set(node.id, { x: 40 + column * COLUMN, y: 40 + row * ROW }));
  }
  return positions;
}
