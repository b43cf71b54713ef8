import { describe, expect, it } from "vitest";
import { graphDiff, isEmptyDiff } from "./diff";
import type { Graph } from "./types";

const published: Graph = {
  nodes: [
    { id: "hook", type: "trigger.webhook", config: {}, retry: { max_attempts: 3 }, position: { x: 0, y: 0 } },
    { id: "shape", type: "transform", config: { fields: { a: "1" } } },
    { id: "old", type: "delay", config: { seconds: 5 } },
  ],
  edges: [
    { from: "hook", to: "shape", from_port: "out" },
    { from: "shape", to: "old" },
  ],
};

describe("version diff", () => {
  it("finds nodes added, removed and changed, with the changed fields", () => {
    const draft: Graph = {
      nodes: [
        { id: "hook", type: "trigger.webhook", position: { x: 300, y: 40 } },
        { id: "shape", type: "transform", config: { fields: { a: "2" } }, on_failure: "fail_run" },
        { id: "call", type: "http.request", config: { url: "http://127.0.0.1/" } },
      ],
      edges: [
        { from: "hook", to: "shape" },
        { from: "shape", to: "call" },
      ],
    };
    expect(graphDiff(published, draft)).toEqual({
      added: ["call"],
      removed: ["old"],
      changed: [{ id: "shape", fields: ["on_failure", "config.fields"] }],
      edges_added: ["shape:out->call"],
      edges_removed: ["shape:out->old"],
      settings_changed: false,
    });
  });

  it("sees no change in moves or in defaults spelled out", () => {
    const moved: Graph = JSON.parse(JSON.stringify(published));
    moved.nodes[1].position = { x: 99, y: 99 };
    moved.nodes[1].retry = { max_attempts: 3, jitter: 0.2 };
    moved.nodes[2].on_failure = "dead_letter";
    expect(isEmptyDiff(graphDiff(published, moved))).toBe(true);
  });

  it("lists every node as added against no published version", () => {
    expect(graphDiff(null, published).added).toEqual(["hook", "old", "shape"]);
  });

  it("names disabling a node as a change of the node", () => {
    const draft: Graph = { ...published, nodes: published.nodes.map((n) => (n.id === "old" ? { ...n, disabled: true } : n)) };
    expect(graphDiff(published, draft).changed).toEqual([{ id: "old", fields: ["disabled"] }]);
  });
});
