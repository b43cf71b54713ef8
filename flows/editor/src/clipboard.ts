// Copy and paste of nodes: the copies get fresh ids, the edges between
// copied nodes come along, and references among them follow the new ids.
import type { Catalogue } from "./connections";
import { newNodeId } from "./graph";
import { renameNode } from "./rename";
import type { Graph } from "./types";

export function copyNodes(graph: Graph, ids: Set<string>): Graph {
  return {
    nodes: graph.nodes.filter((n) => ids.has(n.id)),
    edges: graph.edges.filter((e) => ids.has(e.from) && ids.has(e.to)),
  };
}

/** The copied nodes and edges to add to `graph`, offset; a trigger is left
 * out when the graph has one already (a flow has one). */
export function pasteNodes(graph: Graph, copied: Graph, catalogue: Catalogue, offset = 40): Graph {
  const hasTrigger = graph.nodes.some((n) => catalogue.get(n.type)?.is_trigger);
  const taken = new Set(graph.nodes.map((n) => n.id));
  let pasted: Graph = {
    nodes: copied.nodes.filter((n) => !(hasTrigger && catalogue.get(n.type)?.is_trigger)),
    edges: [],
  };
  const kept = new Set(pasted.nodes.map((n) => n.id));
  pasted.edges = copied.edges.filter((e) => kept.has(e.from) && kept.has(e.to));
  for (const node of [...pasted.nodes]) {
    const info = catalogue.get(node.type);
    const fresh = info ? newNodeId(info, taken) : `${node.id}_copy`;
    taken.add(fresh);
    // Renamed in two steps via a placeholder, so "a"->"b" and "b"->"c" cannot collide.
    pasted = renameNode(pasted, node.id, `tmp_paste_${fresh}`);
  }
  for (const node of [...pasted.nodes]) pasted = renameNode(pasted, node.id, node.id.replace(/^tmp_paste_/, ""));
  pasted.nodes = pasted.nodes.map((n) => ({
    ...n,
    position: { x: (n.position?.x ?? 0) + offset, y: (n.position?.y ?? 0) + offset },
  }));
  return pasted;
}
