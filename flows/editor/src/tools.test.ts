import { describe, expect, it } from "vitest";
import { pasteNodes, copyNodes } from "./clipboard";
import type { Catalogue } from "./connections";
import { History } from "./history";
import { layout } from "./layout";
import { renameNode, renameProblem, rewriteText } from "./rename";
import type { ConnectorInfo, Graph } from "./types";

function info(key: string, label: string, is_trigger = false): ConnectorInfo {
  return {
    key, label, category: "Data", icon: "box", description: "", side_effect: "none", is_trigger,
    ports: ["out"], dynamic_ports: false, credential_fields: [], in_palette: true,
    config_schema: {}, example_config: {},
  };
}

const catalogue: Catalogue = new Map([
  ["trigger.webhook", info("trigger.webhook", "Webhook", true)],
  ["transform", info("transform", "Transform")],
]);

const graph: Graph = {
  nodes: [
    { id: "hook", type: "trigger.webhook", position: { x: 0, y: 0 } },
    { id: "shape", type: "transform", config: { fields: { a: "{{ trigger.body.a }}" } }, position: { x: 10, y: 0 } },
    { id: "sum", type: "transform", config: { fields: { b: "{{ steps.shape.output.a + steps['shape'].output.a }}", note: "steps.shape in words" } }, position: { x: 20, y: 0 } },
  ],
  edges: [
    { from: "hook", to: "shape", from_port: "out" },
    { from: "shape", to: "sum", from_port: "out" },
  ],
};

describe("rename", () => {
  it("rewrites edges and the expressions that name the node, not plain text", () => {
    const renamed = renameNode(graph, "shape", "totals");
    expect(renamed.nodes.map((n) => n.id)).toEqual(["hook", "totals", "sum"]);
    expect(renamed.edges).toEqual([
      { from: "hook", to: "totals", from_port: "out" },
      { from: "totals", to: "sum", from_port: "out" },
    ]);
    expect(renamed.nodes[2].config).toEqual({
      fields: { b: "{{ steps.totals.output.a + steps['totals'].output.a }}", note: "steps.shape in words" },
    });
  });

  it("leaves a longer id that starts with the old one alone", () => {
    expect(rewriteText("{{ steps.shape_2.output }} {{ steps.shape }}", "shape", "x")).toBe(
      "{{ steps.shape_2.output }} {{ steps.x }}",
    );
  });

  it("refuses bad or taken ids", () => {
    expect(renameProblem(graph, "shape", "Shape")).toMatch(/lowercase/);
    expect(renameProblem(graph, "shape", "sum")).toBe("there is already a node “sum”");
    expect(renameProblem(graph, "shape", "fine_id")).toBeNull();
  });
});

describe("layout", () => {
  it("puts each node one column after its furthest predecessor", () => {
    const positions = layout({ ...graph, edges: [...graph.edges, { from: "hook", to: "sum" }] });
    expect(positions.get("hook")!.x).toBeLessThan(positions.get("shape")!.x);
    expect(positions.get("shape")!.x).toBeLessThan(positions.get("sum")!.x);
  });

  it("survives a cycle in a draft", () => {
    const cyclic: Graph = { nodes: graph.nodes, edges: [...graph.edges, { from: "sum", to: "shape" }] };
    expect(layout(cyclic).size).toBe(3);
  });
});

describe("undo and redo", () => {
  it("walks back and forth; a new change drops the redo", () => {
    const history = new History("a");
    history.record("b");
    history.record("c");
    expect(history.undo()).toBe("b");
    expect(history.undo()).toBe("a");
    expect(history.undo()).toBeNull();
    expect(history.redo()).toBe("b");
    history.record("d");
    expect(history.canRedo).toBe(false);
    expect(history.undo()).toBe("b");
  });
});

describe("copy and paste", () => {
  it("gives copies fresh ids, keeps their inner edges and references, skips a second trigger", () => {
    const copied = copyNodes(graph, new Set(["hook", "shape", "sum"]));
    const pasted = pasteNodes(graph, copied, catalogue);
    expect(pasted.nodes.map((n) => n.id)).toEqual(["transform", "transform_2"]);
    expect(pasted.edges).toEqual([{ from: "transform", to: "transform_2", from_port: "out" }]);
    expect((pasted.nodes[1].config!.fields as Record<string, string>).b).toBe(
      "{{ steps.transform.output.a + steps['transform'].output.a }}",
    );
    expect(pasted.nodes[0].position).toEqual({ x: 50, y: 40 });
  });
});
