// A sticky note: documentation on the canvas, kept in the graph's notes.
import { type NodeProps, useReactFlow } from "@xyflow/react";
import { useContext } from "react";
import type { NoteNode } from "./canvas";
import { EditorContext } from "./context";

export function NoteView({ id, data }: NodeProps<NoteNode>) {
  const { updateNodeData } = useReactFlow();
  const { readOnly } = useContext(EditorContext);
  return (
    <div className="lf-note" data-testid={`note-${id}`}>
      <textarea
        className="nodrag"
        aria-label={`Sticky note ${id}`}
        value={data.text}
        readOnly={readOnly}
        placeholder="Write a note…"
        onChange={(e) => updateNodeData(id, { text: e.target.value })}
      />
    </div>
  );
}
