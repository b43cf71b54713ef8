import { describe, expect, it } from "vitest";
import type { Catalogue } from "./connections";
import {
  compensationMode,
  compensators,
  disableProblem,
  isExpression,
  samplePaths,
  shortJson,
  variablesWithSamples,
  withCompensation,
  withDisabled,
} from "./panel";
import type { ConnectorInfo, GraphNode } from "./types";

function info(key: string, extra: Partial<ConnectorInfo> = {}): ConnectorInfo {
  return {
    key, label: key, category: "Data", icon: "box", description: "", side_effect: "none",
    is_trigger: false, ports: ["out"], dynamic_ports: false,
    credential_fields: [], in_palette: true, config_schema: {}, example_config: {}, ...extra,
  };
}

const catalogue: Catalogue = new Map([
  ["trigger.webhook", info("trigger.webhook", { label: "Webhook", is_trigger: true })],
  ["http.request", info("http.request", {
    label: "HTTP request",
    config_schema: { properties: { method: { default: "GET" }, url: { type: "string" } } },
  })],
  ["payments.charge", info("payments.charge", { in_palette: false })],
  ["transform", info("transform", { label: "Transform" })],
]);

const context = {
  trigger: { body: { email: "ada@example.test", amount: 5 } },
  steps: { hook: { output: { body: { email: "ada@example.test", amount: 5 } } }, shape: { output: { amount: 5, note: "gift" } } },
};

describe("sample values for the variables list", () => {
  it("walks the trigger and each step's output a few levels deep", () => {
    const paths = samplePaths(context);
    expect(paths.get("trigger.body.email")).toBe("ada@example.test");
    expect(paths.get("steps.shape.output.note")).toBe("gift");
    expect(paths.has("run")).toBe(false);
  });

  it("gives the graph's names their sample and adds the fields only the sample knows", () => {
    const listed = variablesWithSamples(["trigger", "steps.shape.output.amount", "steps.later.output"], context);
    expect(listed.slice(0, 3)).toEqual([
      { path: "trigger", sample: '{"body":{"email":"ada@example.test","amount":5}}' },
      { path: "steps.shape.output.amount", sample: "5" },
      { path: "steps.later.output" },
    ]);
    const extra = listed.slice(3).map((v) => v.path);
    expect(extra).toContain("trigger.body.email");
    expect(extra).not.toContain("steps.shape.output");
  });

  it("lists the names alone without a sample", () => {
    expect(variablesWithSamples(["trigger"], null)).toEqual([{ path: "trigger" }]);
  });

  it("shortens long values", () => {
    const text = shortJson("x".repeat(200));
    expect(text.length).toBe(60);
    expect(text.endsWith("…")).toBe(true);
  });

  it("knows an expression from plain text", () => {
    expect(isExpression("{{ trigger.body }}")).toBe(true);
    expect(isExpression("{% if x %}y{% endif %}")).toBe(true);
    expect(isExpression("plain")).toBe(false);
    expect(isExpression(3)).toBe(false);
  });
});

describe("compensation choices", () => {
  const node: GraphNode = { id: "charge", type: "payments.charge", config: {} };

  it("reads the three modes from the graph's shapes", () => {
    expect(compensationMode(undefined)).toBe("none");
    expect(compensationMode("default")).toBe("default");
    expect(compensationMode({ default: true })).toBe("default");
    expect(compensationMode({ type: "http.request", config: {} })).toBe("other");
  });

  it("writes another connector with its schema's defaults, as flows/graph.py accepts it", () => {
    const chosen = withCompensation(node, "other", "http.request", catalogue);
    expect(chosen.compensation).toEqual({ type: "http.request", config: { method: "GET" } });
    const configured = { ...chosen, compensation: { type: "http.request", config: { method: "POST", url: "u" }, retry: { max_attempts: 4 } } };
    // Choosing the same connector again keeps its config and retry.
    expect(withCompensation(configured, "other", "http.request", catalogue).compensation).toEqual(configured.compensation);
    // Another connector starts from its own defaults, the retry kept.
    expect(withCompensation(configured, "other", "transform", catalogue).compensation).toEqual({ type: "transform", config: {}, retry: { max_attempts: 4 } });
    expect(withCompensation(configured, "default", null, catalogue).compensation).toBe("default");
    expect("compensation" in withCompensation(configured, "none", null, catalogue)).toBe(false);
  });

  it("offers steps from the palette, not triggers nor demo connectors", () => {
    expect(compensators(catalogue).map((c) => c.key)).toEqual(["http.request", "transform"]);
  });
});

describe("disabling a node", () => {
  it("keeps the flag only when on", () => {
    const on = withDisabled({ id: "a", type: "transform" }, true);
    expect(on.disabled).toBe(true);
    expect("disabled" in withDisabled(on, false)).toBe(false);
  });

  it("refuses a trigger and a node with several inputs, as the server does", () => {
    expect(disableProblem({ id: "hook", type: "trigger.webhook" }, catalogue, 0)).toMatch(/needs an enabled trigger/);
    expect(disableProblem({ id: "join", type: "transform" }, catalogue, 2)).toMatch(/one input through/);
    expect(disableProblem({ id: "a", type: "transform" }, catalogue, 1)).toBeNull();
  });
});
