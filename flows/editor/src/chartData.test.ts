import { describe, expect, it } from "vitest";
import { chartData } from "./chartData";

describe("chartData", () => {
  it("aligns the hours with started, succeeded and failed in that order", () => {
    const data = chartData({
      hours: [3600, 7200],
      started: [4, 1],
      succeeded: [3, 0],
      failed: [1, 1],
    });
    expect(data).toEqual([
      [3600, 7200],
      [4, 1],
      [3, 0],
      [1, 1],
    ]);
  });

  it("refuses series of different lengths rather than drawing them shifted", () => {
    expect(() =>
      chartData({ hours: [3600, 7200], started: [4], succeeded: [3, 0], failed: [1, 1] }),
    ).toThrow("the started series has 1 hours, not 2");
  });
});
