// A published version on the canvas, read-only, with the way back and the
// way to restore it into the draft.
import { Background, Controls, MiniMap, ReactFlow, ReactFlowProvider } from "@xyflow/react";
import { useContext, useMemo } from "react";
import type { VersionOut } from "./api";
import { fromGraph } from "./canvas";
import { EditorContext } from "./context";
import { FlowNodeView } from "./FlowNodeView";
import { NoteView } from "./NoteView";

const nodeTypes = { lf: FlowNodeView, note: NoteView };

export function VersionView({ version, canRestore, onClose, onRestore }: {
  version: VersionOut;
  canRestore: boolean;
  onClose: () => void;
  onRestore: () => void;
}) {
  const { nodes, edges } = useMemo(() => fromGraph(version.graph), [version]);
  const context = useContext(EditorContext);
  return (
    <EditorContext.Provider value={{ ...context, readOnly: true }}>
    <div className="lf-version" data-testid="version-view">
      <div className="callout" role="note">
        Version {version.number}, published by {version.published_by}
        {version.note ? ` (“${version.note}”)` : ""}: read-only.{" "}
        <button type="button" onClick={onClose}>Back to the draft</button>{" "}
        {canRestore && (
          <button type="button" onClick={onRestore} data-testid="restore-version">
            Restore into the draft
          </button>
        )}
      </div>
      <div className="lf-canvas lf-version-canvas">
        <ReactFlowProvider>
          <ReactFlow
            nodes={nodes}
            edges={edges}
            nodeTypes={nodeTypes}
            nodesDraggable={false}
            nodesConnectable={false}
            elementsSelectable={false}
            fitView
            fitViewOptions={{ maxZoom: 1 }}
            proOptions={{ hideAttribution: true }}
          >
            <Background />
            <Controls showInteractive={false} />
            <MiniMap pannable zoomable />
          </ReactFlow>
        </ReactFlowProvider>
      </div>
    </div>
    </EditorContext.Provider>
  );
}
