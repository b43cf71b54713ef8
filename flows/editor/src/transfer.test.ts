import { describe, expect, it } from "vitest";
import { graphFromFile } from "./transfer";

describe("import into the draft", () => {
  it("takes the graph of an exported file", () => {
    const file = JSON.stringify({
      format: "ledgerflow/flow@1",
      flow: { name: "x", slug: "x" },
      graph: { nodes: [{ id: "start", type: "trigger.manual" }], edges: [] },
    });
    expect(graphFromFile(file).nodes[0].id).toBe("start");
  });

  it("says what is wrong with other files", () => {
    expect(() => graphFromFile("{")).toThrow("not JSON");
    expect(() => graphFromFile('{"nodes": []}')).toThrow("not a Ledgerflow flow file");
    expect(() => graphFromFile('{"format": "ledgerflow/flow@1", "flow": {}}')).toThrow("has no graph");
  });
});
