// What a node's expressions can read: the trigger's input and the outputs
// of the nodes before it (its ancestors), with the fields their connectors
// declare (a transform's are its own field names).
import type { Catalogue } from "./connections";
import type { Graph, Json } from "./types";

export function ancestors(graph: Graph, id: string): string[] {
  const seen = new Set<string>();
  const queue = [id];
  while (queue.length) {
    const current = queue.shift()!;
    for (const e of graph.edges) {
      if (e.to === current && !seen.has(e.from)) {
        seen.add(e.from);
        queue.push(e.from);
      }
    }
  }
  seen.delete(id);
  // In the graph's order, which is the order people added them.
  return graph.nodes.map((n) => n.id).filter((n) => seen.has(n));
}

export function variablesAt(graph: Graph, id: string, catalogue: Catalogue): string[] {
  const found = ["trigger"];
  for (const ancestor of ancestors(graph, id)) {
    const node = graph.nodes.find((n) => n.id === ancestor)!;
    const info = catalogue.get(node.type);
    if (info?.is_trigger) continue;
    const fields = outputFields(node.type, node.config?.fields, info?.output_schema);
    const base = `steps.${ancestor}.output`;
    found.push(...(fields.length ? fields.map((f) => `${base}.${f}`) : [base]));
  }
  return found;
}

function outputFields(type: string, configured: Json | undefined, schema: Json | undefined): string[] {
  if (type === "transform" && configured && typeof configured === "object" && !Array.isArray(configured)) {
    return Object.keys(configured);
  }
  if (schema && typeof schema === "object" && !Array.isArray(schema)) {
    const properties = schema.properties;
    if (properties && typeof properties === "object" && !Array.isArray(properties)) return Object.keys(properties);
  }
  return [];
}
