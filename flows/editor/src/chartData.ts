// The dashboard's hourly figures (config/dashboard.py, embedded with
// json_script) as uPlot's aligned arrays: x first, then one array per series.
export interface HourlySeries {
  hours: number[]; // Unix seconds at the start of each hour
  started: number[];
  succeeded: number[];
  failed: number[];
}

export const SERIES = [
  { key: "started", label: "Started", stroke: "#2563eb" },
  { key: "succeeded", label: "Succeeded", stroke: "#16a34a" },
  { key: "failed", label: "Failed", stroke: "#dc2626" },
] as const;

export function chartData(series: HourlySeries): number[][] {
  const length = series.hours.length;
  for (const { key } of SERIES) {
    if (series[key].length !== length) {
      throw new Error(`the ${key} series has ${series[key].length} hours, not ${length}`);
    }
  }
  return [series.hours, ...SERIES.map(({ key }) => series[key])];
}
