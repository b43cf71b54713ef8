// Import into the draft: a file written by export (or `manage.py
// export_flow`) gives its graph to the draft; the inventory facts in it are
// left to `manage.py import_flow`.
import type { Graph } from "./types";

export const FORMAT = "ledgerflow/flow@1";

export function graphFromFile(text: string): Graph {
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch {
    throw new Error("the file is not JSON");
  }
  if (!document || typeof document !== "object" || (document as { format?: unknown }).format !== FORMAT) {
    throw new Error(`not a Ledgerflow flow file (expected format ${FORMAT})`);
  }
  const graph = (document as { graph?: unknown }).graph;
  if (!graph || typeof graph !== "object" || !Array.isArray((graph as Graph).nodes) || !Array.isArray((graph as Graph).edges)) {
    throw new Error("the file has no graph (a flow never published exports none)");
  }
  return graph as Graph;
}
