// The side panel of the selected node: its config form (from the
// connector's JSON Schema), retry policy and what happens when it fails.
import { useMemo, useState } from "react";
import { DEFAULT_RETRY } from "./diff";
import { type FormContext, SchemaForm } from "./SchemaForm";
import { type FormField, fieldsOf } from "./schemaForm";
import { parseSampleInput, type TestStep } from "./testrun";
import type { ConnectorInfo, GraphError, GraphNode, Json, JsonObject } from "./types";

const RETRY_FIELDS: FormField[] = [
  { name: "max_attempts", label: "Max attempts", kind: "integer", required: false, nullable: false, default: DEFAULT_RETRY.max_attempts },
  { name: "initial_seconds", label: "First wait (s)", kind: "number", required: false, nullable: false, default: DEFAULT_RETRY.initial_seconds },
  { name: "multiplier", label: "Multiplier", kind: "number", required: false, nullable: false, default: DEFAULT_RETRY.multiplier },
  { name: "max_seconds", label: "Longest wait (s)", kind: "number", required: false, nullable: false, default: DEFAULT_RETRY.max_seconds },
  { name: "jitter", label: "Jitter (0–1)", kind: "number", required: false, nullable: false, default: DEFAULT_RETRY.jitter },
];

export function NodePanel(props: {
  node: GraphNode;
  info: ConnectorInfo | undefined;
  errors: GraphError[];
  credentials: { name: string; type: string }[];
  readOnly: boolean;
  onChange: (spec: GraphNode) => void;
  onDelete: () => void;
  onRename: (to: string) => string | null;
  variables: string[];
  // The node in the last test run, and its pinned output (undefined: none).
  testStep?: TestStep;
  pinned?: Json;
  onPin: (output: Json) => void;
  onUnpin: () => void;
  onRunStep: () => void;
}) {
  const { node, info, errors, credentials, readOnly, onChange, onDelete, onRename } = props;
  const [newId, setNewId] = useState(node.id);
  const [renameError, setRenameError] = useState("");
  const fields = useMemo(
    () => (info ? fieldsOf(info.config_schema, info.config_schema, info.credential_fields) : []),
    [info],
  );
  const ctx: FormContext = useMemo(() => {
    const byField = new Map<string, string[]>();
    for (const e of errors) {
      if (e.field) byField.set(e.field, [...(byField.get(e.field) ?? []), e.message]);
    }
    return { errors: byField, credentials, readOnly };
  }, [errors, credentials, readOnly]);
  const nodeErrors = errors.filter((e) => !e.field || !ctx.errors.has(e.field) || !e.field.startsWith("config"));
  return (
    <aside className="lf-panel" aria-label={`Node ${node.id}`} data-testid="node-panel">
      <header>
        <h2>{info?.label ?? node.type}</h2>
        <code>{node.id}</code>
        {info?.description && <p className="lf-help">{info.description}</p>}
        {!readOnly && (
          <form
            className="lf-rename"
            onSubmit={(e) => {
              e.preventDefault();
              setRenameError(newId === node.id ? "" : (onRename(newId.trim()) ?? ""));
            }}
          >
            <label htmlFor="field-id">Id (expressions call it steps.{node.id})</label>
            <input id="field-id" value={newId} onChange={(e) => setNewId(e.target.value)} />
            <button type="submit" disabled={newId.trim() === node.id}>Rename</button>
            {renameError && <p className="lf-field-errors" role="alert">{renameError}</p>}
          </form>
        )}
      </header>
      {nodeErrors.length > 0 && (
        <ul className="lf-node-errors" role="alert" data-testid="panel-node-errors">
          {nodeErrors.map((e, i) => (
            <li key={i}>{e.field ? `${e.field}: ${e.message}` : e.message}</li>
          ))}
        </ul>
      )}
      {info && !info.is_trigger && (
        <details className="lf-variables" data-testid="variables">
          <summary>Variables here ({props.variables.length})</summary>
          <p className="lf-help">Write them in a text field as {"{{ … }}"}, e.g. {"{{ trigger.body }}"}.</p>
          <ul>
            {props.variables.map((v) => (
              <li key={v}>
                <code>{`{{ ${v} }}`}</code>
              </li>
            ))}
          </ul>
        </details>
      )}
      <TestData {...props} />
      <section>
        <h3>Settings</h3>
        {info ? (
          <SchemaForm fields={fields} value={node.config ?? {}} prefix="config" ctx={ctx} onChange={(config) => onChange({ ...node, config })} />
        ) : (
          <p className="lf-node-warn">Unknown connector: edit this node in the advanced (JSON) view.</p>
        )}
      </section>
      {info && !info.is_trigger && (
        <section>
          <h3>When it fails</h3>
          <div className="lf-field">
            <label htmlFor="field-on_failure">On failure</label>
            <select
              id="field-on_failure"
              value={node.on_failure ?? "dead_letter"}
              disabled={readOnly}
              onChange={(e) => {
                const { on_failure: _old, ...rest } = node;
                onChange(e.target.value === "dead_letter" ? rest : { ...rest, on_failure: "fail_run" });
              }}
            >
              <option value="dead_letter">wait as a dead letter for a person</option>
              <option value="fail_run">fail the run (and compensate)</option>
            </select>
          </div>
          <div className="lf-field">
            <label htmlFor="field-compensation">Compensation (undo when the run fails later)</label>
            <select
              id="field-compensation"
              value={node.compensation === undefined ? "" : isDefault(node.compensation) ? "default" : "custom"}
              disabled={readOnly || (node.compensation !== undefined && !isDefault(node.compensation))}
              onChange={(e) => {
                const { compensation: _old, ...rest } = node;
                onChange(e.target.value === "default" ? { ...rest, compensation: "default" } : rest);
              }}
            >
              <option value="">none</option>
              {(info.has_compensate || isDefault(node.compensation)) && <option value="default">the connector's own undo</option>}
              {node.compensation !== undefined && !isDefault(node.compensation) && (
                <option value="custom">another connector (edit in the advanced view)</option>
              )}
            </select>
          </div>
          <h4>Retry policy</h4>
          <SchemaForm
            fields={RETRY_FIELDS}
            value={(node.retry ?? {}) as JsonObject}
            prefix="retry"
            ctx={ctx}
            onChange={(retry) => {
              const { retry: _old, ...rest } = node;
              onChange(Object.keys(retry).length ? { ...rest, retry } : rest);
            }}
          />
        </section>
      )}
      {!readOnly && (
        <button type="button" className="danger" onClick={onDelete}>
          Delete node
        </button>
      )}
    </aside>
  );
}

function isDefault(compensation: unknown): boolean {
  return (
    compensation === "default" ||
    (typeof compensation === "object" && compensation !== null && (compensation as { default?: boolean }).default === true)
  );
}

const json = (value: Json) => JSON.stringify(value, null, 2);

/** The node's input, output and error in the last test run; its pinned
 * output; pinning and "Run this step". */
function TestData({ node, info, readOnly, testStep, pinned, onPin, onUnpin, onRunStep }: Parameters<typeof NodePanel>[0]) {
  const [typed, setTyped] = useState("");
  const [typedError, setTypedError] = useState("");
  if (!info) return null;
  return (
    <section className="lf-testrun" data-testid="test-data">
      <h3>Test data</h3>
      {testStep ? (
        <div data-testid="test-step" data-status={testStep.status}>
          <p className="lf-help">
            Last test run: <strong>{testStep.status.replace("_", " ")}</strong>
            {testStep.attempts > 1 ? ` after ${testStep.attempts} attempts` : ""}
            {testStep.carried_from ? ` (output from ${testStep.carried_from}, not run)` : ""}
          </p>
          <h4>Input</h4>
          <pre className="lf-json" data-testid="test-input">{json(testStep.input)}</pre>
          <h4>Output</h4>
          <pre className="lf-json" data-testid="test-output">{json(testStep.output)}</pre>
          {testStep.error && (
            <>
              <h4>Error</h4>
              <pre className="lf-json lf-field-errors" data-testid="test-error">{testStep.error}</pre>
            </>
          )}
        </div>
      ) : (
        <p className="lf-help">No test run has reached this node yet.</p>
      )}
      {pinned !== undefined && (
        <>
          <h4>Pinned output</h4>
          <pre className="lf-json" data-testid="pinned-output">{json(pinned)}</pre>
        </>
      )}
      {!readOnly && (
        <div className="lf-pin-actions">
          {testStep?.status === "succeeded" && !testStep.carried_from && (
            <button type="button" data-testid="pin-output" onClick={() => onPin(testStep.output)} title="Test runs use it instead of running this node">
              Pin this output
            </button>
          )}
          {pinned !== undefined && <button type="button" data-testid="unpin" onClick={onUnpin}>Unpin</button>}
          {!info.is_trigger && (
            <button type="button" data-testid="run-step" onClick={onRunStep} title="Run this node alone on the outputs of the nodes before it">
              Run this step
            </button>
          )}
        </div>
      )}
      {!readOnly && (
        <details>
          <summary>Pin typed JSON</summary>
          <textarea aria-label={`Output to pin on ${node.id}`} className="lf-sample" rows={4} value={typed} onChange={(e) => { setTyped(e.target.value); setTypedError(""); }} />
          {typedError && <p className="lf-field-errors" role="alert">{typedError}</p>}
          <button
            type="button"
            onClick={() => {
              const parsed = parseSampleInput(typed);
              if ("error" in parsed) setTypedError(parsed.error.replace("sample input", "output"));
              else onPin(parsed.value);
            }}
          >
            Pin
          </button>
        </details>
      )}
    </section>
  );
}
