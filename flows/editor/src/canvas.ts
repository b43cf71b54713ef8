// Between the server's graph and React Flow's nodes and edges. Sticky notes
// are nodes of their own type on the canvas and `notes` in the graph.
import type { Edge, Node } from "@xyflow/react";
import { keptPins, type Pinned } from "./testrun";
import type { Graph, GraphNode, JsonObject, Note } from "./types";

export type NodeData = { spec: GraphNode };
export type FlowNode = Node<NodeData, "lf">;
export type NoteNode = Node<{ text: string }, "note">;
export type CanvasNode = FlowNode | NoteNode;

export const edgeId = (from: string, port: string, to: string) => `${from}:${port}->${to}`;

export const isStep = (n: CanvasNode): n is FlowNode => n.type === "lf";

export function fromGraph(graph: Graph): { nodes: CanvasNode[]; edges: Edge[] } {
  const nodes: CanvasNode[] = graph.nodes.map((spec, index) => ({
    id: spec.id,
    type: "lf" as const,
    position: spec.position ?? { x: 80 + index * 260, y: 120 },
    data: { spec },
  }));
  for (const note of graph.notes ?? []) {
    nodes.push({ id: note.id, type: "note", position: note.position, data: { text: note.text } });
  }
  const edges: Edge[] = graph.edges.map((e) => {
    const port = e.from_port ?? "out";
    return { id: edgeId(e.from, port, e.to), source: e.from, sourceHandle: port, target: e.to, targetHandle: "in" };
  });
  return { nodes, edges };
}

const rounded = (p: { x: number; y: number }) => ({ x: Math.round(p.x), y: Math.round(p.y) });

export function toGraph(nodes: CanvasNode[], edges: Edge[], settings?: JsonObject, pinned: Pinned = {}): Graph {
  const graph: Graph = {
    nodes: nodes.filter(isStep).map((n) => {
      const { position: _old, ...spec } = n.data.spec;
      return { ...spec, config: spec.config ?? {}, position: rounded(n.position) };
    }),
    edges: edges.map((e) => ({ from: e.source, to: e.target, from_port: e.sourceHandle || "out" })),
  };
  if (settings && Object.keys(settings).length) graph.settings = settings;
  const notes: Note[] = nodes
    .filter((n): n is NoteNode => n.type === "note")
    .map((n) => ({ id: n.id, text: n.data.text, position: rounded(n.position) }));
  if (notes.length) graph.notes = notes;
  const pins = keptPins(pinned, graph.nodes.map((n) => n.id));
  if (pins) graph.pinned = pins;
  return graph;
}

/** A fresh note id: notes use a hyphen, which step ids cannot, so they never collide. */
export function newNoteId(nodes: CanvasNode[]): string {
  const taken = new Set(nodes.map((n) => n.id));
  for (let n = 1; ; n++) if (!taken.has(`note-${n}`)) return `note-${n}`;
}
