import { describe, expect, it } from "vitest";
import cases from "./nodeStates.cases.json";
import { baseNode, nodeStates, type StepRow } from "./nodeStates";

describe("nodeStates", () => {
  for (const c of cases) {
    it(c.name, () => {
      const painted = Object.fromEntries(nodeStates(c.rows as StepRow[]));
      expect(painted).toEqual(c.nodes);
    });
  }
});

describe("baseNode", () => {
  it("splits a compensation step from its node", () => {
    expect(baseNode("charge~undo")).toEqual({ node: "charge", phase: "undo" });
    expect(baseNode("charge")).toEqual({ node: "charge", phase: "do" });
  });
});
