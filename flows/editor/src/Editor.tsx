// The flow editor: palette, canvas and side panel over one draft. Every
// change is saved 2 s after the last one (only when the graph changed), on
// top of the revision it was based on; the server's validation comes back
// with each save and is painted on the nodes and fields it names.
import {
  addEdge,
  Background,
  type Connection,
  Controls,
  type Edge,
  MiniMap,
  ReactFlow,
  useEdgesState,
  useNodesState,
  useReactFlow,
} from "@xyflow/react";
import { type DragEvent, useCallback, useEffect, useMemo, useRef, useState } from "react";
import { Api, type Draft, type Stale, type VersionOut } from "./api";
import { type CanvasNode, edgeId, fromGraph, isStep, newNoteId, toGraph } from "./canvas";
import { NoteView } from "./NoteView";
import { type Catalogue, connectionProblem, dropProblem } from "./connections";
import { EditorContext } from "./context";
import { graphDiff, isEmptyDiff } from "./diff";
import { FlowNodeView } from "./FlowNodeView";
import { initialConfig, newNodeId } from "./graph";
import { NodePanel } from "./NodePanel";
import { copyNodes, pasteNodes } from "./clipboard";
import { History } from "./history";
import { layout } from "./layout";
import { DRAG_TYPE, Palette } from "./Palette";
import { renameNode, renameProblem } from "./rename";
import { graphFromFile } from "./transfer";
import { variablesAt } from "./variables";
import { disableProblem, withDisabled } from "./panel";
import { PublishDialog } from "./PublishDialog";
import { SideEffectsDialog, TestRunDialog } from "./TestRunDialog";
import { defaultSampleInput, pin, type Pinned, renamePin, sideEffectWords, statusByNode, type TestRun, unpin } from "./testrun";
import { VersionView } from "./VersionView";
import type { ConnectorInfo, Graph, GraphDiff, GraphError, GraphNode, Json, JsonObject } from "./types";

export const AUTOSAVE_MS = 2000;
// A test run is asked for its state this often until it settles, at most
// this many times (a run waiting on a long delay is left to its run page).
const POLL_MS = 400;
const MAX_POLLS = 300;
const nodeTypes = { lf: FlowNodeView, note: NoteView };

type SaveState = "saved" | "pending" | "saving" | "stale" | "failed";

export function Editor({ api, draft, connectors, credentials, canEdit, exportUrl }: {
  api: Api;
  exportUrl: string;
  draft: Draft;
  connectors: ConnectorInfo[];
  credentials: { name: string; type: string }[];
  canEdit: boolean;
}) {
  const readOnly = !canEdit;
  const catalogue: Catalogue = useMemo(() => new Map(connectors.map((c) => [c.key, c])), [connectors]);
  const initial = useMemo(() => fromGraph(draft.graph ?? { nodes: [], edges: [] }), [draft]);
  const [nodes, setNodes, onNodesChange] = useNodesState<CanvasNode>(initial.nodes);
  const [edges, setEdges, onEdgesChange] = useEdgesState<Edge>(initial.edges);
  const settings = useRef<JsonObject | undefined>(draft.graph?.settings);
  const [pinned, setPinned] = useState<Pinned>(draft.graph?.pinned ?? {});
  const revision = useRef(draft.revision);
  const savedJson = useRef(JSON.stringify(toGraph(initial.nodes, initial.edges, settings.current, draft.graph?.pinned ?? {})));
  const [errors, setErrors] = useState<GraphError[]>(draft.errors);
  const [saveState, setSaveState] = useState<SaveState>("saved");
  const [stale, setStale] = useState<Stale | null>(null);
  const [notice, setNotice] = useState("");
  const [message, setMessage] = useState("");
  const [selected, setSelected] = useState<string | null>(null);
  const [publishedVersion, setPublishedVersion] = useState(draft.published_version);
  const [publishing, setPublishing] = useState<{ diff: GraphDiff } | null>(null);
  const { screenToFlowPosition, fitView } = useReactFlow();
  const [versions, setVersions] = useState<Omit<VersionOut, "graph">[]>([]);
  const [viewing, setViewing] = useState<VersionOut | null>(null);

  useEffect(() => {
    if (publishedVersion) void api.versions().then(setVersions);
  }, [api, publishedVersion]);

  const graph: Graph = useMemo(() => toGraph(nodes, edges, settings.current, pinned), [nodes, edges, pinned]);
  const graphJson = useMemo(() => JSON.stringify(graph), [graph]);
  // The newest graph, for a save that answers after further edits.
  const latestJson = useRef(graphJson);
  latestJson.current = graphJson;
  const history = useRef(new History(savedJson.current));
  const clipboard = useRef<Graph | null>(null);
  const [, setHistoryTick] = useState(0);

  // Undo steps: the graph half a second after a burst of changes (a drag,
  // typing) settles.
  useEffect(() => {
    const timer = window.setTimeout(() => {
      history.current.record(graphJson);
      setHistoryTick((t) => t + 1);
    }, 500);
    return () => window.clearTimeout(timer);
  }, [graphJson]);

  const applyGraph = useCallback(
    (next: Graph, select: string[] = []) => {
      const loaded = fromGraph(next);
      settings.current = next.settings;
      setPinned(next.pinned ?? {});
      setNodes(loaded.nodes.map((n) => ({ ...n, selected: select.includes(n.id) })));
      setEdges(loaded.edges);
      setSelected(select.length === 1 ? select[0] : null);
    },
    [setNodes, setEdges],
  );

  const undo = useCallback(
    (forward: boolean) => {
      history.current.record(graphJson);
      const state = forward ? history.current.redo() : history.current.undo();
      if (state !== null) applyGraph(JSON.parse(state) as Graph);
      setHistoryTick((t) => t + 1);
    },
    [graphJson, applyGraph],
  );

  const tidy = useCallback(() => {
    const positions = layout(graph);
    setNodes((current) => current.map((n) => ({ ...n, position: positions.get(n.id) ?? n.position })));
    window.setTimeout(() => fitView({ maxZoom: 1 }), 50);
  }, [graph, setNodes]);

  const rename = useCallback(
    (from: string, to: string): string | null => {
      const problem = renameProblem(graph, from, to);
      if (problem) return problem;
      applyGraph({ ...renameNode(graph, from, to), pinned: renamePin(graph.pinned ?? {}, from, to) }, [to]);
      return null;
    },
    [graph, applyGraph],
  );

  const paste = useCallback(() => {
    if (!clipboard.current) return;
    const pasted = pasteNodes(graph, clipboard.current, catalogue);
    if (!pasted.nodes.length) {
      setNotice("Not pasted: a flow has exactly one trigger.");
      return;
    }
    applyGraph(
      { ...graph, nodes: [...graph.nodes, ...pasted.nodes], edges: [...graph.edges, ...pasted.edges] },
      pasted.nodes.map((n) => n.id),
    );
  }, [graph, catalogue, applyGraph]);

  // D, as in n8n: disable the selected nodes, or enable them when all are.
  const toggleDisabled = useCallback(() => {
    const chosen = nodes.filter(isStep).filter((n) => n.selected);
    if (!chosen.length) return;
    const enable = chosen.every((n) => n.data.spec.disabled);
    const refused: string[] = [];
    const next = new Map<string, GraphNode>();
    for (const n of chosen) {
      const incoming = graph.edges.filter((e) => e.to === n.id).length;
      const problem = enable ? null : disableProblem(n.data.spec, catalogue, incoming);
      if (problem) refused.push(problem);
      else next.set(n.id, withDisabled(n.data.spec, !enable));
    }
    setNodes((current) => current.map((n) => (isStep(n) && next.has(n.id) ? { ...n, data: { spec: next.get(n.id)! } } : n)));
    setNotice(refused.length ? `Not disabled: ${refused.join("; ")}.` : "");
  }, [nodes, graph, catalogue, setNodes]);

  // The panel's sample values and previews read the graph as it is now,
  // saved or not, without restarting on every change.
  const graphNow = useRef(graph);
  graphNow.current = graph;
  const preview = useMemo(
    () =>
      readOnly || !selected
        ? undefined
        : (expression?: string, undo?: boolean) => api.preview({ node: selected, expression, graph: graphNow.current, undo }),
    [api, readOnly, selected],
  );

  // Shortcuts, except while typing in a field.
  useEffect(() => {
    if (readOnly) return;
    const onKey = (e: KeyboardEvent) => {
      const target = e.target as HTMLElement;
      if (target.closest("input, textarea, select, [contenteditable]")) return;
      if (!(e.ctrlKey || e.metaKey || e.altKey) && e.key.toLowerCase() === "d") {
        toggleDisabled();
        e.preventDefault();
        return;
      }
      if (!(e.ctrlKey || e.metaKey)) return;
      const key = e.key.toLowerCase();
      if (key === "z") undo(e.shiftKey);
      else if (key === "y") undo(true);
      else if (key === "c") clipboard.current = copyNodes(graph, new Set(nodes.filter((n) => n.selected).map((n) => n.id)));
      else if (key === "v") paste();
      else return;
      e.preventDefault();
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [readOnly, undo, paste, graph, nodes, toggleDisabled]);

  const save = useCallback(
    async (base: number) => {
      const json = graphJson;
      setSaveState("saving");
      try {
        const { status, data } = await api.save(JSON.parse(json) as Graph, base);
        if (status === 409) {
          setStale(data as Stale);
          setSaveState("stale");
          return false;
        }
        const saved = data as { revision: number; errors: GraphError[] };
        revision.current = saved.revision;
        savedJson.current = json;
        setErrors(saved.errors);
        setStale(null);
        setSaveState(json === latestJson.current ? "saved" : "pending");
        return true;
      } catch (error) {
        setSaveState("failed");
        setNotice(`Saving failed: ${(error as Error).message}. Your changes are kept here; the next change tries again.`);
        return false;
      }
    },
    [api, graphJson],
  );

  // Auto-save: 2 s after the last change, only when the graph differs from
  // the last save, never over someone else's newer revision.
  useEffect(() => {
    if (readOnly || stale) return;
    if (graphJson === savedJson.current) {
      setSaveState((s) => (s === "pending" ? "saved" : s));
      return;
    }
    setSaveState("pending");
    const timer = window.setTimeout(() => void save(revision.current), AUTOSAVE_MS);
    return () => window.clearTimeout(timer);
  }, [graphJson, readOnly, stale, save]);

  // Leaving with unsaved changes asks first.
  useEffect(() => {
    const warn = (e: BeforeUnloadEvent) => {
      if (!readOnly && graphJson !== savedJson.current) e.preventDefault();
    };
    window.addEventListener("beforeunload", warn);
    return () => window.removeEventListener("beforeunload", warn);
  }, [graphJson, readOnly]);

  const reload = useCallback(async () => {
    const fresh = await api.draft();
    const loaded = fromGraph(fresh.graph ?? { nodes: [], edges: [] });
    settings.current = fresh.graph?.settings;
    setPinned(fresh.graph?.pinned ?? {});
    revision.current = fresh.revision;
    savedJson.current = JSON.stringify(toGraph(loaded.nodes, loaded.edges, settings.current, fresh.graph?.pinned ?? {}));
    setNodes(loaded.nodes);
    setEdges(loaded.edges);
    history.current.reset(savedJson.current);
    window.setTimeout(() => fitView({ maxZoom: 1 }), 50);
    setErrors(fresh.errors);
    setStale(null);
    setSaveState("saved");
    setMessage(`Reloaded revision ${fresh.revision}${fresh.saved_by ? `, saved by ${fresh.saved_by}` : ""}.`);
  }, [api, setNodes, setEdges, fitView]);

  const errorsByNode = useMemo(() => {
    const map = new Map<string, GraphError[]>();
    for (const e of errors) if (e.node) map.set(e.node, [...(map.get(e.node) ?? []), e]);
    return map;
  }, [errors]);
  const graphErrors = errors.filter((e) => !e.node || !nodes.some((n) => n.id === e.node));

  const onConnect = useCallback(
    (c: Connection) => {
      const problem = connectionProblem(graph, catalogue, c);
      if (problem) {
        setNotice(`Not connected: ${problem}.`);
        return;
      }
      setNotice("");
      const port = c.sourceHandle || "out";
      setEdges((current) => addEdge({ ...c, id: edgeId(c.source, port, c.target), sourceHandle: port, targetHandle: "in" }, current));
    },
    [graph, catalogue, setEdges],
  );

  const addNode = useCallback(
    (key: string, position: { x: number; y: number }) => {
      const problem = dropProblem(graph, catalogue, key);
      const info = catalogue.get(key);
      if (problem || !info) {
        setNotice(`Not added: ${problem}.`);
        return;
      }
      setNotice("");
      const id = newNodeId(info, new Set(nodes.map((n) => n.id)));
      const spec: GraphNode = { id, type: key, config: initialConfig(info) };
      setNodes((current) => [
        ...current.map((n) => ({ ...n, selected: false })),
        { id, type: "lf", position, data: { spec }, selected: true },
      ]);
      setSelected(id);
    },
    [graph, catalogue, nodes, setNodes],
  );

  const onDrop = useCallback(
    (event: DragEvent) => {
      event.preventDefault();
      const key = event.dataTransfer.getData(DRAG_TYPE);
      if (!key) return;
      addNode(key, screenToFlowPosition({ x: event.clientX, y: event.clientY }));
    },
    [addNode, screenToFlowPosition],
  );

  const updateSpec = useCallback(
    (id: string, spec: GraphNode) =>
      setNodes((current) => current.map((n) => (n.id === id && isStep(n) ? { ...n, data: { spec } } : n))),
    [setNodes],
  );

  const deleteNode = useCallback(
    (id: string) => {
      setNodes((current) => current.filter((n) => n.id !== id));
      setEdges((current) => current.filter((e) => e.source !== id && e.target !== id));
      setSelected(null);
    },
    [setNodes, setEdges],
  );

  const startPublish = useCallback(async () => {
    setMessage("");
    if (graphJson !== savedJson.current && !(await save(revision.current))) return;
    const previous = publishedVersion ? (await api.version(publishedVersion)).graph : null;
    setPublishing({ diff: graphDiff(previous, JSON.parse(graphJson) as Graph) });
  }, [api, graphJson, publishedVersion, save]);

  const publish = useCallback(
    async (note: string) => {
      const { status, data } = await api.publish(revision.current, note);
      setPublishing(null);
      if (status === 409) {
        setStale(data as Stale);
        setSaveState("stale");
      } else if (status === 422) {
        setErrors((data as { errors: GraphError[] }).errors);
        setNotice("Not published: fix the problems marked on the nodes first.");
      } else {
        const published = data as { number: number; diff: GraphDiff };
        setPublishedVersion(published.number);
        setMessage(`Published version ${published.number}.`);
      }
    },
    [api],
  );

  // Test runs ----------------------------------------------------------------
  const [testDialog, setTestDialog] = useState<{ text: string; node?: string } | null>(null);
  const [effects, setEffects] = useState<{ words: string[]; input: Json; node?: string } | null>(null);
  const [testRun, setTestRun] = useState<TestRun | null>(null);
  const lastInput = useRef<Json | undefined>(undefined);
  const polls = useRef(0);

  useEffect(() => {
    if (readOnly) return;
    api.testRuns().then((runs) => { if (runs.length) lastInput.current = runs[0].input; }, () => undefined);
  }, [api, readOnly]);

  const [testUrl, setTestUrl] = useState(draft.test_webhook_url);
  const openTestRun = (node?: string) => {
    setTestDialog({ text: defaultSampleInput(graph, catalogue, lastInput.current), node });
    // The trigger may have become a webhook since the page loaded.
    api.draft().then((fresh) => setTestUrl(fresh.test_webhook_url), () => undefined);
  };

  const runTest = useCallback(
    async (input: Json, confirm: boolean, node?: string) => {
      setTestDialog(null);
      setEffects(null);
      // A test run runs the saved draft: save what is on the canvas first.
      if (graphJson !== savedJson.current && !(await save(revision.current))) return;
      try {
        const answer = await api.testRun(input, confirm, node);
        if (answer.status === 409) {
          setEffects({ words: sideEffectWords(answer.nodes), input, node });
        } else if (answer.status === 422) {
          if (answer.errors) setErrors(answer.errors);
          setNotice(`Not run: ${answer.detail}`);
        } else {
          lastInput.current = input;
          polls.current = 0;
          setNotice("");
          setTestRun(answer.run);
        }
      } catch (error) {
        setNotice(`The test run could not start: ${(error as Error).message}`);
      }
    },
    [api, graphJson, save],
  );

  // Poll the test run until it settles.
  useEffect(() => {
    if (!testRun || testRun.settled || polls.current >= MAX_POLLS) return;
    const timer = window.setTimeout(() => {
      polls.current += 1;
      api.testRunGet(testRun.id).then(setTestRun, (error: Error) => setNotice(`Lost the test run: ${error.message}`));
    }, POLL_MS);
    return () => window.clearTimeout(timer);
  }, [api, testRun]);

  const statuses = useMemo(() => statusByNode(testRun), [testRun]);
  const pinnedNodes = useMemo(() => new Set(Object.keys(pinned)), [pinned]);

  const selectedNode = nodes.filter(isStep).find((n) => n.id === selected);
  const addNote = () => {
    const id = newNoteId(nodes);
    setNodes((current) => [...current, { id, type: "note", position: { x: 40, y: 40 + current.length * 20 }, data: { text: "" } }]);
  };
  return (
    <EditorContext.Provider value={{ catalogue, errorsByNode, readOnly, statusByNode: statuses, pinnedNodes }}>
      <div className="lf-toolbar">
        <span className={`lf-save lf-save-${saveState}`} data-testid="save-state" data-revision={revision.current}>
          {readOnly ? "Read-only: your role or team may not edit this flow" : SAVE_WORDS[saveState]}
        </span>
        <span className="muted">{publishedVersion ? `v${publishedVersion} published` : "never published"}</span>
        {publishedVersion > 0 && (
          <a className="button" href={exportUrl} download title="The flow file, as manage.py export_flow writes it">
            Export
          </a>
        )}
        {versions.length > 0 && (
          <select
            aria-label="View a published version"
            value={viewing ? String(viewing.number) : ""}
            onChange={(e) => {
              if (!e.target.value) setViewing(null);
              else void api.version(Number(e.target.value)).then(setViewing);
            }}
          >
            <option value="">Draft</option>
            {versions.map((v) => (
              <option key={v.number} value={v.number}>
                v{v.number} by {v.published_by}
              </option>
            ))}
          </select>
        )}
        {!readOnly && (
          <span className="lf-tools">
            <button type="button" onClick={() => undo(false)} disabled={!history.current.canUndo} title="Undo (Ctrl+Z)">Undo</button>
            <button type="button" onClick={() => undo(true)} disabled={!history.current.canRedo} title="Redo (Ctrl+Shift+Z)">Redo</button>
            <button type="button" onClick={tidy} disabled={!nodes.length} title="Lay the nodes out left to right">Tidy up</button>
            <button type="button" onClick={addNote} title="Add a sticky note">Note</button>
            <label className="button lf-import" title="Load the graph of an exported flow file into this draft">
              Import…
              <input
                type="file"
                accept="application/json,.json"
                aria-label="Import a flow file into the draft"
                onChange={(e) => {
                  const file = e.target.files?.[0];
                  e.target.value = "";
                  if (!file) return;
                  void file.text().then((text) => {
                    try {
                      applyGraph(graphFromFile(text));
                      setMessage(`Imported the graph of ${file.name} into the draft.`);
                      setNotice("");
                    } catch (error) {
                      setNotice(`Not imported: ${(error as Error).message}.`);
                    }
                  });
                }}
              />
            </label>
          </span>
        )}
        {!readOnly && (
          <button type="button" data-testid="test-run" disabled={!nodes.length || saveState === "stale"} onClick={() => openTestRun()} title="Run the draft on a sample input, as a test run">
            Test run…
          </button>
        )}
        {!readOnly && (
          <button type="button" className="primary" data-testid="publish" disabled={saveState === "stale" || saveState === "saving"} onClick={() => void startPublish()}>
            Publish…
          </button>
        )}
      </div>
      {stale && (
        <div className="errors" role="alert" data-testid="stale">
          <p>{stale.detail} Your changes are not saved.</p>
          <button type="button" onClick={() => void reload()}>Reload theirs</button>{" "}
          <button type="button" className="danger" onClick={() => void save(stale.revision)}>Overwrite with mine</button>
        </div>
      )}
      {notice && (
        <p className="lf-notice" role="alert" data-testid="notice">
          {notice} <button type="button" className="link" onClick={() => setNotice("")}>dismiss</button>
        </p>
      )}
      {message && <p className="message message-success" role="status" data-testid="message">{message}</p>}
      {testRun && (
        <p className="muted" role="status" data-testid="test-run-status" data-status={testRun.status} data-settled={String(testRun.settled)}>
          <a href={testRun.url}>Test run {testRun.id}</a>: {testRun.status}
          {testRun.error ? ` (${testRun.error})` : ""}
          {testRun.settled ? "" : "…"}{" "}
          <button type="button" className="link" onClick={() => setTestRun(null)}>clear</button>
        </p>
      )}
      {graphErrors.length > 0 && (
        <ul className="lf-graph-errors" data-testid="graph-errors">
          {graphErrors.map((e, i) => (
            <li key={i}>{[e.node, e.field].filter(Boolean).join(" · ")}{e.node || e.field ? ": " : ""}{e.message}</li>
          ))}
        </ul>
      )}
      {viewing && (
        <VersionView
          version={viewing}
          canRestore={!readOnly}
          onClose={() => setViewing(null)}
          onRestore={() => {
            applyGraph(viewing.graph);
            setViewing(null);
            setMessage(`Version ${viewing.number} is restored into the draft; publish to make it current.`);
            window.setTimeout(() => fitView({ maxZoom: 1 }), 50);
          }}
        />
      )}
      <div className={`lf-editor${readOnly ? " lf-readonly" : ""}${viewing ? " lf-hidden" : ""}`}>
        {!readOnly && <Palette connectors={connectors} onAdd={(key) => addNode(key, { x: 120 + nodes.length * 40, y: 120 + nodes.length * 40 })} />}
        <div className="lf-canvas" data-testid="canvas" onDragOver={(e) => { e.preventDefault(); e.dataTransfer.dropEffect = "move"; }} onDrop={onDrop}>
          <ReactFlow
            nodes={nodes}
            edges={edges}
            nodeTypes={nodeTypes}
            onNodesChange={readOnly ? (changes) => onNodesChange(changes.filter((c) => c.type === "select" || c.type === "dimensions")) : onNodesChange}
            onEdgesChange={readOnly ? undefined : onEdgesChange}
            onConnect={onConnect}
            onSelectionChange={({ nodes: chosen }) => setSelected(chosen.length === 1 ? chosen[0].id : null)}
            nodesDraggable={!readOnly}
            nodesConnectable={!readOnly}
            deleteKeyCode={readOnly ? null : ["Backspace", "Delete"]}
            // Fitting an empty canvas would make the first drop jump to the middle.
            fitView={initial.nodes.length > 0}
            fitViewOptions={{ maxZoom: 1 }}
            proOptions={{ hideAttribution: true }}
          >
            <Background />
            <Controls showInteractive={false} />
            <MiniMap pannable zoomable />
          </ReactFlow>
          {nodes.length === 0 && <p className="lf-empty">{readOnly ? "This draft has no nodes." : "Drag a trigger from the palette to start."}</p>}
        </div>
        {!selectedNode && (
          <aside className="lf-panel lf-panel-empty" aria-label="Node settings">
            <p className="muted">Select a node to see its settings{readOnly ? "" : ", or drag a connector from the palette"}.</p>
          </aside>
        )}
        {selectedNode && (
          <NodePanel
            key={selectedNode.id}
            node={selectedNode.data.spec}
            info={catalogue.get(selectedNode.data.spec.type)}
            errors={errorsByNode.get(selectedNode.id) ?? []}
            credentials={credentials}
            readOnly={readOnly}
            onChange={(spec) => updateSpec(selectedNode.id, spec)}
            onDelete={() => deleteNode(selectedNode.id)}
            onRename={(to) => rename(selectedNode.id, to)}
            variables={variablesAt(graph, selectedNode.id, catalogue)}
            catalogue={catalogue}
            incoming={graph.edges.filter((e) => e.to === selectedNode.id).length}
            preview={preview}
            testStep={testRun?.steps.find((st) => st.node === selectedNode.id)}
            pinned={pinned[selectedNode.id]}
            onPin={(output) => setPinned((current) => pin(current, selectedNode.id, output))}
            onUnpin={() => setPinned((current) => unpin(current, selectedNode.id))}
            onRunStep={() => openTestRun(selectedNode.id)}
          />
        )}
      </div>
      {testDialog && (
        <TestRunDialog
          initial={testDialog.text}
          node={testDialog.node}
          testWebhookUrl={testUrl}
          onCancel={() => setTestDialog(null)}
          onRun={(input) => void runTest(input, false, testDialog.node)}
        />
      )}
      {effects && (
        <SideEffectsDialog words={effects.words} onCancel={() => setEffects(null)} onConfirm={() => void runTest(effects.input, true, effects.node)} />
      )}
      {publishing && <PublishDialog diff={publishing.diff} empty={isEmptyDiff(publishing.diff)} onCancel={() => setPublishing(null)} onPublish={(note) => void publish(note)} />}
    </EditorContext.Provider>
  );
}

const SAVE_WORDS: Record<SaveState, string> = {
  saved: "All changes saved",
  pending: "Unsaved changes…",
  saving: "Saving…",
  stale: "Not saved: someone else saved first",
  failed: "Saving failed",
};
