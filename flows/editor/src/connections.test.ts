import { describe, expect, it } from "vitest";
import { type Catalogue, connectionProblem, dropProblem } from "./connections";
import type { ConnectorInfo, Graph } from "./types";

function info(key: string, extra: Partial<ConnectorInfo> = {}): ConnectorInfo {
  return {
    key, label: key, category: "Data", icon: "box", description: "", side_effect: "none",
    is_trigger: false, ports: ["out"], dynamic_ports: false,
    credential_fields: [], in_palette: true, config_schema: {}, example_config: {}, ...extra,
  };
}

const catalogue: Catalogue = new Map([
  ["trigger.webhook", info("trigger.webhook", { is_trigger: true })],
  ["transform", info("transform")],
  ["branch", info("branch", { ports: ["true", "false"] })],
  ["switch", info("switch", { dynamic_ports: true, ports: ["a", "default"] })],
]);

const graph: Graph = {
  nodes: [
    { id: "hook", type: "trigger.webhook" },
    { id: "shape", type: "transform" },
    { id: "check", type: "branch" },
    { id: "route", type: "switch", config: { cases: [{ equals: 1, port: "big" }], default_port: "small" } },
  ],
  edges: [
    { from: "hook", to: "shape" },
    { from: "shape", to: "check" },
  ],
};

describe("connection rules", () => {
  it("allows a forward edge on an existing port", () => {
    expect(connectionProblem(graph, catalogue, { source: "check", sourceHandle: "true", target: "route" })).toBeNull();
  });

  it("refuses an edge into the trigger", () => {
    expect(connectionProblem(graph, catalogue, { source: "shape", target: "hook" })).toMatch(/is a trigger/);
  });

  it("refuses a cycle and names its path", () => {
    expect(connectionProblem(graph, catalogue, { source: "check", sourceHandle: "false", target: "shape" })).toBe(
      "this would make a cycle: shape → check → shape",
    );
  });

  it("refuses a port the node does not have, listing its ports", () => {
    expect(connectionProblem(graph, catalogue, { source: "check", sourceHandle: "maybe", target: "route" })).toBe(
      "“check” has no port “maybe” (ports: true, false)",
    );
  });

  it("reads a switch's ports from its cases", () => {
    expect(connectionProblem(graph, catalogue, { source: "route", sourceHandle: "big", target: "shape" })).toBeNull();
    expect(connectionProblem(graph, catalogue, { source: "route", sourceHandle: "a", target: "check" })).toMatch(
      /no port “a” \(ports: big, small\)/,
    );
  });

  it("refuses self loops, duplicates and missing nodes", () => {
    expect(connectionProblem(graph, catalogue, { source: "shape", target: "shape" })).toMatch(/itself/);
    expect(connectionProblem(graph, catalogue, { source: "hook", target: "shape" })).toMatch(/already connected/);
    expect(connectionProblem(graph, catalogue, { source: "ghost", target: "shape" })).toBe("there is no node “ghost”");
  });

  it("refuses a second trigger on drop", () => {
    expect(dropProblem(graph, catalogue, "trigger.webhook")).toMatch(/exactly one trigger, and “hook”/);
    expect(dropProblem(graph, catalogue, "transform")).toBeNull();
    expect(dropProblem({ nodes: [], edges: [] }, catalogue, "trigger.webhook")).toBeNull();
  });
});
