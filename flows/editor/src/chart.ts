// Entry of the dashboard's chart: the element with data-chart-series names the
// json_script element holding the hourly figures. uPlot draws on a canvas and
// sizes elements through the CSSOM only, so the strict CSP holds; its
// stylesheet is extracted to a file by Vite.
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { chartData, type HourlySeries, SERIES } from "./chartData";

const HEIGHT = 300;

function draw(target: HTMLElement): void {
  const source = document.getElementById(target.dataset.chartSeries ?? "");
  if (!source?.textContent) return;
  const series = JSON.parse(source.textContent) as HourlySeries;
  const options: uPlot.Options = {
    width: Math.max(target.clientWidth, 320),
    height: HEIGHT,
    series: [{}, ...SERIES.map(({ label, stroke }) => ({ label, stroke, width: 2 }))],
    axes: [{}, { label: "Runs" }],
    scales: { x: { time: true } },
    // The page speaks UTC; the axis does too, whatever the browser's zone.
    tzDate: (seconds) => uPlot.tzDate(new Date(seconds * 1000), "Etc/UTC"),
  };
  const chart = new uPlot(options, chartData(series) as uPlot.AlignedData, target);
  new ResizeObserver(() => {
    chart.setSize({ width: Math.max(target.clientWidth, 320), height: HEIGHT });
  }).observe(target);
}

for (const target of document.querySelectorAll<HTMLElement>("[data-chart-series]")) {
  draw(target);
}
