import { describe, expect, it } from "vitest";
import type { Catalogue } from "./connections";
import { toGraph, fromGraph } from "./canvas";
import { defaultSampleInput, keptPins, parseSampleInput, pin, renamePin, sideEffectWords, statusByNode, type TestRun, unpin } from "./testrun";
import type { ConnectorInfo, Graph } from "./types";

function info(key: string, is_trigger = false): ConnectorInfo {
  return {
    key, label: key, category: "Data", icon: "box", description: "", side_effect: "none", is_trigger,
    ports: ["out"], dynamic_ports: false, credential_fields: [], in_palette: true,
    config_schema: {}, example_config: {},
  };
}

const catalogue: Catalogue = new Map([
  ["trigger.webhook", info("trigger.webhook", true)],
  ["trigger.manual", info("trigger.manual", true)],
  ["transform", info("transform")],
]);

const webhookGraph: Graph = {
  nodes: [{ id: "hook", type: "trigger.webhook" }, { id: "shape", type: "transform" }],
  edges: [{ from: "hook", to: "shape" }],
};

describe("sample input", () => {
  it("is the last test run's input when there is one", () => {
    expect(JSON.parse(defaultSampleInput(webhookGraph, catalogue, { body: { n: 1 } }))).toEqual({ body: { n: 1 } });
  });
  it("is a webhook delivery's shape for a webhook draft, else an empty object", () => {
    expect(JSON.parse(defaultSampleInput(webhookGraph, catalogue, undefined))).toEqual({ body: {}, query: {}, headers: {} });
    const manual = { ...webhookGraph, nodes: [{ id: "go", type: "trigger.manual" }] };
    expect(defaultSampleInput(manual, catalogue, undefined)).toBe("{}");
  });
  it("parses JSON and says why other text is not", () => {
    expect(parseSampleInput(' {"a": [1, 2]} ')).toEqual({ value: { a: [1, 2] } });
    expect(parseSampleInput("   ")).toEqual({ value: {} });
    const bad = parseSampleInput("{a: 1}");
    expect("error" in bad && bad.error.startsWith("The sample input is not JSON")).toBe(true);
  });
});

describe("pinned outputs", () => {
  it("pin, unpin and follow a rename", () => {
    const pinned = pin({}, "shape", { a: 1 });
    expect(pinned).toEqual({ shape: { a: 1 } });
    expect(renamePin(pinned, "shape", "reshape")).toEqual({ reshape: { a: 1 } });
    expect(renamePin(pinned, "other", "x")).toBe(pinned);
    expect(unpin(pinned, "shape")).toEqual({});
  });
  it("drop with their node, and leave no empty key in the graph", () => {
    expect(keptPins({ shape: 1, gone: 2 }, ["hook", "shape"])).toEqual({ shape: 1 });
    expect(keptPins({ gone: 2 }, ["hook"])).toBeUndefined();
  });
  it("are saved with the draft by toGraph", () => {
    const loaded = fromGraph(webhookGraph);
    expect(toGraph(loaded.nodes, loaded.edges, undefined, { shape: { a: 1 }, gone: 3 }).pinned).toEqual({ shape: { a: 1 } });
    expect("pinned" in toGraph(loaded.nodes, loaded.edges, undefined, {})).toBe(false);
  });
});

describe("painting a test run", () => {
  it("maps each step's status to its node", () => {
    const run = { steps: [{ node: "hook", status: "succeeded" }, { node: "shape", status: "failed" }] } as unknown as TestRun;
    expect([...statusByNode(run)]).toEqual([["hook", "succeeded"], ["shape", "failed"]]);
    expect(statusByNode(null).size).toBe(0);
  });
  it("names side effects for the confirm dialog", () => {
    expect(sideEffectWords([{ node: "charge", type: "http.request", side_effect: "unsafe" }])).toEqual([
      "charge (http.request): unsafe",
    ]);
  });
});
