import { describe, expect, it } from "vitest";
import { overlapping, placed } from "./placement";
import type { Graph } from "./types";

const chain = (positions: ({ x: number; y: number } | undefined)[]): Graph => ({
  nodes: positions.map((position, i) => ({ id: `n${i}`, type: "transform", ...(position ? { position } : {}) })),
  edges: positions.slice(1).map((_, i) => ({ from: `n${i}`, to: `n${i + 1}` })),
});

describe("placed", () => {
  it("lays out a published graph whose nodes all sit at 0,0", () => {
    const graph = chain([{ x: 0, y: 0 }, { x: 0, y: 0 }, { x: 0, y: 0 }]);
    expect(overlapping(graph)).toBe(true);
    const xs = placed(graph).nodes.map((n) => n.position!.x);
    expect(xs).toEqual([40, 320, 600]);
    expect(overlapping(placed(graph))).toBe(false);
  });

  it("lays out a graph with a node that has no position", () => {
    expect(overlapping(chain([{ x: 0, y: 0 }, undefined]))).toBe(true);
  });

  it("keeps the places an author gave the nodes", () => {
    const graph = chain([{ x: 10, y: 300 }, { x: 400, y: 20 }, { x: 400, y: 200 }]);
    expect(placed(graph)).toBe(graph);
  });
});
