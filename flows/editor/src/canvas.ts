// Between the server's graph and React Flow's nodes and edges.
import type { Edge, Node } from "@xyflow/react";
import type { Graph, GraphNode, JsonObject } from "./types";

export type NodeData = { spec: GraphNode };
export type FlowNode = Node<NodeData, "lf">;

export const edgeId = (from: string, port: string, to: string) => `${from}:${port}->${to}`;

export function fromGraph(graph: Graph): { nodes: FlowNode[]; edges: Edge[] } {
  const nodes: FlowNode[] = graph.nodes.map((spec, index) => ({
    id: spec.id,
    type: "lf",
    position: spec.position ?? { x: 80 + index * 260, y: 120 },
    data: { spec },
  }));
  const edges: Edge[] = graph.edges.map((e) => {
    const port = e.from_port ?? "out";
    return { id: edgeId(e.from, port, e.to), source: e.from, sourceHandle: port, target: e.to, targetHandle: "in" };
  });
  return { nodes, edges };
}

export function toGraph(nodes: FlowNode[], edges: Edge[], settings?: JsonObject): Graph {
  const graph: Graph = {
    nodes: nodes.map((n) => {
      const { position: _old, ...spec } = n.data.spec;
      return { ...spec, config: spec.config ?? {}, position: { x: Math.round(n.position.x), y: Math.round(n.position.y) } };
    }),
    edges: edges.map((e) => ({ from: e.source, to: e.target, from_port: e.sourceHandle || "out" })),
  };
  if (settings && Object.keys(settings).length) graph.settings = settings;
  return graph;
}
