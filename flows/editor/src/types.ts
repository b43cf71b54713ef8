// The server's shapes (flows/graph.py, flows/api.py, config/api.py).
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

export interface GraphNode {
  id: string;
  type: string;
  config?: JsonObject;
  retry?: JsonObject;
  on_failure?: "dead_letter" | "fail_run";
  compensation?: Json;
  position?: { x: number; y: number };
  // A disabled node stays in the graph but is not executed (see README).
  disabled?: boolean;
}

// A step's state as the engine names it (runs/decider.py STEP_STATES), used to
// paint a node on the editor's test runs and on read-only run diagrams.
export type StepStatus =
  | "pending"
  | "scheduled"
  | "running"
  | "waiting"
  | "retrying"
  | "succeeded"
  | "failed"
  | "skipped"
  | "dead_lettered"
  | "compensating"
  | "compensated"
  | "cancelled";

export interface GraphEdge {
  from: string;
  to: string;
  from_port?: string;
}

export interface Note {
  id: string;
  text: string;
  position: { x: number; y: number };
}

export interface Graph {
  nodes: GraphNode[];
  edges: GraphEdge[];
  settings?: JsonObject;
  notes?: Note[];
  // Sample outputs a test run uses instead of running the node (drafts only).
  pinned?: { [node: string]: Json };
}

export interface ConnectorInfo {
  key: string;
  label: string;
  category: string;
  icon: string;
  description: string;
  side_effect: string;
  side_effect_varies?: boolean;
  is_trigger: boolean;
  ports: string[];
  dynamic_ports: boolean;
  has_compensate?: boolean;
  credential_fields: string[];
  in_palette: boolean;
  config_schema: JsonObject;
  output_schema?: JsonObject | null;
  example_config: JsonObject;
}

export interface GraphError {
  message: string;
  node: string | null;
  field: string | null;
}

export interface NodeChange {
  id: string;
  fields: string[];
}

export interface GraphDiff {
  added: string[];
  removed: string[];
  changed: NodeChange[];
  edges_added: string[];
  edges_removed: string[];
  settings_changed: boolean;
}
