// A graph shown read-only, outside the editor: the flow page's published
// version and a run's pinned version painted with its steps' states. The
// same node view as the editor's canvas; pan, zoom, fit and minimap, and a
// click on a node reported to the page (no selection, no editing).
import { Background, Controls, MiniMap, type Node, ReactFlow, ReactFlowProvider } from "@xyflow/react";
import { type KeyboardEvent, useMemo } from "react";
import { fromGraph } from "./canvas";
import type { Catalogue } from "./connections";
import { EditorContext, type EditorContextValue } from "./context";
import { FlowNodeView } from "./FlowNodeView";
import type { NodeState } from "./nodeStates";
import { NoteView } from "./NoteView";
import { placed } from "./placement";
import type { Graph } from "./types";

const nodeTypes = { lf: FlowNodeView, note: NoteView };
const NO_ERRORS = new Map();
// A diagram is a panel of the page, not a whole window: a small minimap,
// and room around the graph for it and the zoom controls.
const MINIMAP_SIZE = { width: 120, height: 80 };
const FIT = { maxZoom: 1, padding: 0.15 };

export function ReadOnlyDiagram({ graph, catalogue, states, onNodePick }: {
  graph: Graph;
  catalogue: Catalogue;
  states?: Map<string, NodeState>;
  onNodePick?: (node: string) => void;
}) {
  // The graph never changes while the page is open: only the paint does, so
  // a repaint leaves the viewport where the reader put it.
  const { nodes, edges } = useMemo(() => fromGraph(placed(graph)), [graph]);
  const context: EditorContextValue = useMemo(
    () => ({
      catalogue,
      errorsByNode: NO_ERRORS,
      readOnly: true,
      statusByNode: states && new Map([...states].map(([node, s]) => [node, s.status])),
      detailByNode: states && new Map([...states].map(([node, s]) => [node, s.detail])),
    }),
    [catalogue, states],
  );
  const pick = onNodePick && ((_: unknown, node: Node) => node.type === "lf" && onNodePick(node.id));
  // Nodes take the keyboard focus (Tab); Enter on one does what a click does.
  const pickByKey = onNodePick && ((event: KeyboardEvent) => {
    if (event.key !== "Enter") return;
    const node = (event.target as HTMLElement).closest<HTMLElement>(".react-flow__node-lf");
    if (!node?.dataset.id) return;
    event.preventDefault();
    onNodePick(node.dataset.id);
  });
  return (
    <EditorContext.Provider value={context}>
      <div className="lf-diagram-frame" onKeyDown={pickByKey}>
      <ReactFlowProvider>
        <ReactFlow
          nodes={nodes}
          edges={edges}
          nodeTypes={nodeTypes}
          nodesDraggable={false}
          nodesConnectable={false}
          elementsSelectable={false}
          deleteKeyCode={null}
          onNodeClick={pick}
          fitView
          fitViewOptions={FIT}
          proOptions={{ hideAttribution: true }}
        >
          <Background />
          <Controls showInteractive={false} />
          <MiniMap pannable zoomable style={MINIMAP_SIZE} />
        </ReactFlow>
      </ReactFlowProvider>
      </div>
    </EditorContext.Provider>
  );
}
