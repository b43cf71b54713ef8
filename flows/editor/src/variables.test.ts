import { describe, expect, it } from "vitest";
import type { Catalogue } from "./connections";
import type { ConnectorInfo, Graph } from "./types";
import { ancestors, variablesAt } from "./variables";

function info(key: string, extra: Partial<ConnectorInfo> = {}): ConnectorInfo {
  return {
    key, label: key, category: "Data", icon: "box", description: "", side_effect: "none",
    is_trigger: false, ports: ["out"], dynamic_ports: false,
    credential_fields: [], in_palette: true, config_schema: {}, example_config: {}, ...extra,
  };
}

const catalogue: Catalogue = new Map([
  ["trigger.webhook", info("trigger.webhook", { is_trigger: true })],
  ["transform", info("transform", { output_schema: { type: "object" } })],
  ["http.request", info("http.request", { output_schema: { type: "object", properties: { status: {}, body: {} } } })],
  ["delay", info("delay")],
]);

const graph: Graph = {
  nodes: [
    { id: "hook", type: "trigger.webhook" },
    { id: "shape", type: "transform", config: { fields: { amount: "1", note: "x" } } },
    { id: "call", type: "http.request" },
    { id: "wait", type: "delay" },
    { id: "side", type: "delay" },
  ],
  edges: [
    { from: "hook", to: "shape" },
    { from: "shape", to: "call" },
    { from: "call", to: "wait" },
    { from: "hook", to: "side" },
  ],
};

describe("variables at a node", () => {
  it("are the trigger and the outputs of the nodes before it, field by field", () => {
    expect(variablesAt(graph, "wait", catalogue)).toEqual([
      "trigger",
      "steps.shape.output.amount",
      "steps.shape.output.note",
      "steps.call.output.status",
      "steps.call.output.body",
    ]);
  });

  it("leave out nodes on other branches and after it", () => {
    expect(ancestors(graph, "shape")).toEqual(["hook"]);
    expect(variablesAt(graph, "side", catalogue)).toEqual(["trigger"]);
  });
});
