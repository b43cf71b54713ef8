// Entry of the read-only diagrams (flow page, run page). Each element with
// data-diagram-config names a JSON element (json_script, no inline script)
// holding the graph and its connectors. A run's diagram also names the
// element with its step rows: it sits inside the part of the page that live
// updates replace, and is read again after each one, so the painting follows
// the run while the diagram itself (viewport, React root) stays.
import "@xyflow/react/dist/style.css";
import "./editor.css";
import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import { createRoot } from "react-dom/client";
import { nodeStates, type StepRow } from "./nodeStates";
import { ReadOnlyDiagram } from "./ReadOnlyDiagram";
import { focusStep, nodeInHash } from "./stepFocus";
import type { ConnectorInfo, Graph } from "./types";

interface DiagramConfig {
  graph: Graph;
  connectors: ConnectorInfo[];
  // The id of the element whose data-states is {"steps": [...]}: run pages only.
  states?: string;
}

// htmx fires this on the swapped-in element once the page has settled; it bubbles.
const LIVE_UPDATE = "htmx:afterSettle";

function readJson<T>(id: string): T | null {
  const element = document.getElementById(id);
  return element?.textContent ? (JSON.parse(element.textContent) as T) : null;
}

// The step rows sit in a data attribute: htmx removes every <script> it
// swaps in, json_script's included.
function readSteps(id: string): StepRow[] | null {
  const text = document.getElementById(id)?.dataset.states;
  return text ? (JSON.parse(text) as { steps: StepRow[] }).steps : null;
}

function useStepRows(statesId: string | undefined): StepRow[] | null {
  const read = useCallback(() => (statesId ? readSteps(statesId) : null), [statesId]);
  const [rows, setRows] = useState(read);
  const seen = useRef(JSON.stringify(rows));
  useEffect(() => {
    if (!statesId) return;
    const refresh = () => {
      const fresh = read();
      const json = JSON.stringify(fresh);
      // A fragment without the element (an error page) keeps the last paint.
      if (fresh && json !== seen.current) {
        seen.current = json;
        setRows(fresh);
      }
    };
    document.addEventListener(LIVE_UPDATE, refresh);
    return () => document.removeEventListener(LIVE_UPDATE, refresh);
  }, [statesId, read]);
  return rows;
}

function Diagram({ config }: { config: DiagramConfig }) {
  const catalogue = useMemo(() => new Map(config.connectors.map((c) => [c.key, c])), [config]);
  const rows = useStepRows(config.states);
  const states = useMemo(() => (rows ? nodeStates(rows) : undefined), [rows]);
  const focused = useRef<string | null>(config.states ? nodeInHash(location.hash) : null);

  useEffect(() => {
    if (!config.states) return;
    const mark = () => focused.current && focusStep(focused.current, false);
    mark();
    document.addEventListener(LIVE_UPDATE, mark);
    return () => document.removeEventListener(LIVE_UPDATE, mark);
  }, [config.states]);

  const pick = useCallback((node: string) => {
    if (focusStep(node, true)) focused.current = node;
  }, []);
  return <ReadOnlyDiagram graph={config.graph} catalogue={catalogue} states={states} onNodePick={config.states ? pick : undefined} />;
}

for (const element of document.querySelectorAll<HTMLElement>("[data-diagram-config]")) {
  const config = readJson<DiagramConfig>(element.dataset.diagramConfig ?? "");
  if (!config) {
    element.textContent = "The diagram could not load: its data is missing.";
    element.setAttribute("role", "alert");
    continue;
  }
  element.replaceChildren();
  createRoot(element).render(<Diagram config={config} />);
}
