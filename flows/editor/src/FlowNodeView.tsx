// One node on the canvas: its connector, its id, its ports and its errors.
import { Handle, type NodeProps, Position } from "@xyflow/react";
import { useContext } from "react";
import type { FlowNode } from "./canvas";
import { EditorContext } from "./context";
import { portsFor } from "./graph";

export function FlowNodeView({ data, selected }: NodeProps<FlowNode>) {
  const { catalogue, errorsByNode, statusByNode, pinnedNodes, detailByNode } = useContext(EditorContext);
  const spec = data.spec;
  const info = catalogue.get(spec.type);
  const errors = errorsByNode.get(spec.id) ?? [];
  const ports = portsFor(spec, info);
  const status = statusByNode?.get(spec.id);
  const detail = status ? detailByNode?.get(spec.id) : undefined;
  const classes = [
    "lf-node",
    selected ? "lf-selected" : "",
    errors.length ? "lf-node-error" : "",
    info?.is_trigger ? "lf-trigger" : "",
    spec.disabled ? "lf-node-disabled" : "",
    status ? `lf-status-${status}` : "",
  ];
  return (
    <div
      className={classes.filter(Boolean).join(" ")}
      data-testid={`node-${spec.id}`}
      data-node-type={spec.type}
      data-status={status ?? ""}
      data-disabled={spec.disabled ? "true" : undefined}
    >
      {!info?.is_trigger && <Handle type="target" position={Position.Left} id="in" data-testid={`in-${spec.id}`} />}
      <div className="lf-node-head">
        <span className="lf-node-label">{info?.label ?? spec.type}</span>
        <code className="lf-node-id">{spec.id}</code>
      </div>
      {spec.disabled && <p className="lf-node-off">disabled</p>}
      {pinnedNodes?.has(spec.id) && (
        <span className="lf-node-pin" data-testid={`pin-${spec.id}`} title="Output pinned: test runs use it instead of running this node">
          pinned
        </span>
      )}
      {status && (
        <span className="lf-node-status" data-testid={`status-${spec.id}`}>
          {status.replace("_", " ")}
        </span>
      )}
      {detail && <p className="lf-node-detail" data-testid={`detail-${spec.id}`}>{detail}</p>}
      {!info && <p className="lf-node-warn">connector “{spec.type}” is not installed</p>}
      {errors.length > 0 && (
        <ul className="lf-node-errors" data-testid={`node-errors-${spec.id}`}>
          {errors.map((e, i) => (
            <li key={i}>{e.field ? `${e.field}: ${e.message}` : e.message}</li>
          ))}
        </ul>
      )}
      <div className="lf-ports">
        {ports.map((port, i) => (
          <div className="lf-port" key={port}>
            {ports.length > 1 && <span>{port}</span>}
            <Handle
              type="source"
              position={Position.Right}
              id={port}
              data-testid={`out-${spec.id}-${port}`}
              style={ports.length > 1 ? { top: `${((i + 1) * 100) / (ports.length + 1)}%` } : undefined}
            />
          </div>
        ))}
      </div>
    </div>
  );
}
