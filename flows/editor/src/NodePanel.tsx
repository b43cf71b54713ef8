// The side panel of the selected node: its config form (from the
// connector's JSON Schema), whether it is disabled, the variables its
// expressions can read with sample values, a preview of each expression,
// its retry policy and what happens when it fails (compensation included).
import { useEffect, useMemo, useState } from "react";
import type { Catalogue } from "./connections";
import { DEFAULT_RETRY } from "./diff";
import {
  type CompensationMode,
  compensationMode,
  compensators,
  disableProblem,
  type PreviewAnswer,
  variablesWithSamples,
  withCompensation,
  withDisabled,
} from "./panel";
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
  catalogue: Catalogue;
  incoming: number;
  // Renders an expression at this node with sample data; with none, only
  // the sample is answered.
  preview?: (expression?: string, undo?: boolean) => Promise<PreviewAnswer>;
  // The node in the last test run, and its pinned output (undefined: none).
  testStep?: TestStep;
  pinned?: Json;
  onPin: (output: Json) => void;
  onUnpin: () => void;
  onRunStep: () => void;
}) {
  const { node, info, errors, credentials, readOnly, onChange, onDelete, onRename, preview } = props;
  const [sample, setSample] = useState<PreviewAnswer | null>(null);
  useEffect(() => {
    let current = true;
    if (preview && info && !info.is_trigger) {
      preview().then(
        (answer) => current && setSample(answer),
        () => current && setSample(null),
      );
    }
    return () => {
      current = false;
    };
  }, [preview, info]);
  const variables = useMemo(() => variablesWithSamples(props.variables, sample?.context ?? null), [props.variables, sample]);
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
    return { errors: byField, credentials, readOnly, preview: preview && info && !info.is_trigger ? (text: string) => preview(text) : undefined };
  }, [errors, credentials, readOnly, preview, info]);
  const undoCtx: FormContext = useMemo(
    () => ({ ...ctx, preview: ctx.preview && preview ? (text: string) => preview(text, true) : undefined }),
    [ctx, preview],
  );
  // Errors shown on their own field are not repeated at the top.
  const nodeErrors = errors.filter((e) => !e.field || !ON_FIELDS.some((prefix) => e.field!.startsWith(prefix)));
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
        <div className={`lf-field lf-disabled-toggle${errors.some((e) => e.field === "disabled") ? " lf-has-error" : ""}`} data-path="disabled">
          <label>
            <input
              type="checkbox"
              id="field-disabled"
              checked={node.disabled === true}
              disabled={readOnly || (!node.disabled && disableProblem(node, props.catalogue, props.incoming) !== null)}
              title={disableProblem(node, props.catalogue, props.incoming) ?? "Shortcut: D"}
              onChange={(e) => onChange(withDisabled(node, e.target.checked))}
            />{" "}
            Disabled (D): kept in the flow but not run; its input passes through
          </label>
          {errors
            .filter((e) => e.field === "disabled")
            .map((e) => (
              <p key={e.message} className="lf-field-errors" role="alert">{e.message}</p>
            ))}
        </div>
      )}
      {info && !info.is_trigger && (
        <details className="lf-variables" data-testid="variables">
          <summary>Variables here ({variables.length})</summary>
          <p className="lf-help">
            Write them in a text field as {"{{ … }}"}, e.g. {"{{ trigger.body }}"}.{" "}
            {sampleNote(sample)}
          </p>
          <ul>
            {variables.map((v) => (
              <li key={v.path}>
                <code>{`{{ ${v.path} }}`}</code>
                {v.sample !== undefined && <span className="lf-sample" data-testid={`sample-${v.path}`}> = {v.sample}</span>}
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
          <Compensation
            node={node}
            info={info}
            catalogue={props.catalogue}
            ctx={undoCtx}
            onChange={onChange}
          />
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

const ON_FIELDS = ["config", "compensation", "retry", "disabled"];

function sampleNote(sample: PreviewAnswer | null): string {
  if (!sample) return "";
  const used = [...new Set(Object.values(sample.sources).filter((s) => s !== "none"))];
  return used.length ? `Sample values from: ${used.join(", ")}.` : "No sample values yet: run a test, or pin a step's output.";
}

/** None, the connector's own undo, or another connector configured with its
 * own form; saved as flows/graph.py accepts it. */
function Compensation({ node, info, catalogue, ctx, onChange }: {
  node: GraphNode;
  info: ConnectorInfo;
  catalogue: Catalogue;
  ctx: FormContext;
  onChange: (spec: GraphNode) => void;
}) {
  const mode = compensationMode(node.compensation);
  const spec = mode === "other" ? (node.compensation as JsonObject) : null;
  const type = spec && typeof spec.type === "string" ? spec.type : "";
  const other = catalogue.get(type);
  const fields = useMemo(
    () => (other ? fieldsOf(other.config_schema, other.config_schema, other.credential_fields) : []),
    [other],
  );
  const typeErrors = ctx.errors.get("compensation.type") ?? ctx.errors.get("compensation") ?? [];
  return (
    <>
      <div className="lf-field" data-path="compensation">
        <label htmlFor="field-compensation">Compensation (undo when the run fails later)</label>
        <select
          id="field-compensation"
          value={mode}
          disabled={ctx.readOnly}
          onChange={(e) => onChange(withCompensation(node, e.target.value as CompensationMode, type || null, catalogue))}
        >
          <option value="none">none</option>
          {(info.has_compensate || mode === "default") && <option value="default">the connector's own undo</option>}
          <option value="other">another connector…</option>
        </select>
      </div>
      {mode === "other" && (
        <div className={`lf-field${typeErrors.length ? " lf-has-error" : ""}`} data-path="compensation.type">
          <label htmlFor="field-compensation.type">Compensating connector</label>
          <select
            id="field-compensation.type"
            value={type}
            disabled={ctx.readOnly}
            onChange={(e) => onChange(withCompensation(node, "other", e.target.value || null, catalogue))}
          >
            <option value="">— choose —</option>
            {type && !other && <option value={type}>{type} (unknown)</option>}
            {compensators(catalogue).map((c) => (
              <option key={c.key} value={c.key}>
                {c.label}
              </option>
            ))}
          </select>
          {other?.description && <p className="lf-help">{other.description}</p>}
          {typeErrors.length > 0 && (
            <ul className="lf-field-errors" role="alert">
              {typeErrors.map((m) => (
                <li key={m}>{m}</li>
              ))}
            </ul>
          )}
        </div>
      )}
      {mode === "other" && other && (
        <div className="lf-compensation-form" data-testid="compensation-form">
          <SchemaForm
            fields={fields}
            value={(spec?.config ?? {}) as JsonObject}
            prefix="compensation.config"
            ctx={ctx}
            onChange={(config) => onChange({ ...node, compensation: { ...spec, type, config } })}
          />
        </div>
      )}
    </>
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
