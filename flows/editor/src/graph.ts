// Pure helpers on the server's graph format.
import type { ConnectorInfo, Graph, GraphNode, Json } from "./types";

/** A node's output ports. Fixed per connector, except a switch's, which come
 * from its cases (mirrors connectors/nodes/switch.py ports_for). */
export function portsFor(node: GraphNode, info: ConnectorInfo | undefined): string[] {
  if (!info) return ["out"];
  if (!info.dynamic_ports) return info.ports;
  const config = node.config ?? {};
  const cases = Array.isArray(config.cases) ? config.cases : [];
  const ports: string[] = [];
  for (const c of cases) {
    if (c && typeof c === "object" && !Array.isArray(c) && typeof c.port === "string") {
      ports.push(c.port);
    }
  }
  const fallback = typeof config.default_port === "string" ? config.default_port : "default";
  return [...new Set([...ports, fallback])];
}

const NODE_ID = /^[a-z][a-z0-9_]{0,62}$/;

/** A fresh node id from the connector's label: "HTTP request" -> "http_request",
 * then "http_request_2" when taken. */
export function newNodeId(info: ConnectorInfo, taken: Set<string>): string {
  let base = info.label.toLowerCase().replace(/[^a-z0-9]+/g, "_").replace(/^_+|_+$/g, "");
  if (!/^[a-z]/.test(base)) base = `node_${base}`;
  base = base.slice(0, 56) || "node";
  if (!taken.has(base) && NODE_ID.test(base)) return base;
  for (let n = 2; ; n++) {
    const candidate = `${base}_${n}`;
    if (!taken.has(candidate)) return candidate;
  }
}

/** Defaults from the connector's schema for a new node's config: required
 * fields get their default (or nothing, so the form asks for them). */
export function initialConfig(info: ConnectorInfo): Record<string, Json> {
  const config: Record<string, Json> = {};
  const properties = (info.config_schema.properties ?? {}) as Record<string, Record<string, Json>>;
  for (const [name, spec] of Object.entries(properties)) {
    if ("default" in spec && spec.default !== null && typeof spec.default !== "object") {
      config[name] = spec.default;
    }
  }
  return config;
}

export function emptyGraph(): Graph {
  return { nodes: [], edges: [] };
}
