// Renders the fields of schemaForm.ts as controls. Every control has a label
// (tests and screen readers find it by name) and shows its field's errors.
import { useEffect, useState } from "react";
import { ExpressionPreview, type Previewer } from "./ExpressionPreview";
import { isExpression } from "./panel";
import { type FormField, parseNumber, shownValue, withValue } from "./schemaForm";
import type { Json, JsonObject } from "./types";

export interface FormContext {
  errors: Map<string, string[]>; // "config.url" -> messages
  credentials: { name: string; type: string }[];
  readOnly: boolean;
  // Renders an expression at this node with sample data; absent: no preview.
  preview?: Previewer;
}

function Preview({ path, text, ctx }: { path: string; text: unknown; ctx: FormContext }) {
  if (!ctx.preview || !isExpression(text)) return null;
  return <ExpressionPreview path={path} text={text} preview={ctx.preview} />;
}

interface FieldProps {
  field: FormField;
  path: string;
  value: Json | undefined;
  onChange: (value: Json | undefined) => void;
  ctx: FormContext;
}

const controlId = (path: string) => `field-${path}`;

function Errors({ path, ctx }: { path: string; ctx: FormContext }) {
  const messages = ctx.errors.get(path) ?? [];
  if (!messages.length) return null;
  return (
    <ul className="lf-field-errors" role="alert" data-field={path}>
      {messages.map((m) => (
        <li key={m}>{m}</li>
      ))}
    </ul>
  );
}

function Help({ field }: { field: FormField }) {
  return field.description ? <p className="lf-help">{field.description}</p> : null;
}

function FieldLabel({ field, path }: { field: FormField; path: string }) {
  return (
    <label htmlFor={controlId(path)}>
      {field.label}
      {field.required && <span className="lf-required" title="required"> *</span>}
    </label>
  );
}

function JsonField({ field, path, value, onChange, ctx }: FieldProps) {
  const initial = value === undefined ? "" : JSON.stringify(value, null, 2);
  const [text, setText] = useState(initial);
  const [problem, setProblem] = useState("");
  useEffect(() => setText(initial), [initial]);
  return (
    <textarea
      id={controlId(path)}
      rows={3}
      value={text}
      disabled={ctx.readOnly}
      aria-invalid={problem ? true : undefined}
      title={problem || undefined}
      onChange={(e) => {
        setText(e.target.value);
        if (e.target.value.trim() === "") {
          setProblem("");
          onChange(undefined);
          return;
        }
        try {
          onChange(JSON.parse(e.target.value) as Json);
          setProblem("");
        } catch {
          setProblem(`${field.label} is not valid JSON yet`);
        }
      }}
    />
  );
}

function MapField({ path, value, onChange, ctx }: FieldProps) {
  const entries = Object.entries((value ?? {}) as JsonObject);
  const [newKey, setNewKey] = useState("");
  const set = (key: string, v: Json | undefined) => onChange(withValue(value as JsonObject, key, v));
  return (
    <div className="lf-map" id={controlId(path)}>
      {entries.map(([key, v]) => (
        <div className="lf-map-row" key={key}>
          <code>{key}</code>
          <input
            aria-label={`${path}.${key}`}
            value={typeof v === "string" ? v : JSON.stringify(v)}
            disabled={ctx.readOnly}
            onChange={(e) => set(key, e.target.value)}
          />
          <Preview path={`${path}.${key}`} text={v} ctx={ctx} />
          {!ctx.readOnly && (
            <button type="button" className="link" onClick={() => set(key, undefined)} aria-label={`Remove ${key}`}>
              ×
            </button>
          )}
        </div>
      ))}
      {!ctx.readOnly && (
        <div className="lf-map-row">
          <input
            aria-label={`New key for ${path}`}
            placeholder="new key"
            value={newKey}
            onChange={(e) => setNewKey(e.target.value)}
          />
          <button
            type="button"
            disabled={!newKey.trim() || entries.some(([k]) => k === newKey.trim())}
            onClick={() => {
              set(newKey.trim(), "");
              setNewKey("");
            }}
          >
            Add
          </button>
        </div>
      )}
    </div>
  );
}

function ArrayField({ field, path, value, onChange, ctx }: FieldProps) {
  const items = Array.isArray(value) ? value : [];
  const item = field.item!;
  const blank: Json = item.kind === "object" ? {} : item.kind === "boolean" ? false : item.kind === "string" ? "" : null;
  return (
    <div className="lf-array" id={controlId(path)}>
      {items.map((v, index) => (
        <div className="lf-array-item" key={index}>
          <Control
            field={{ ...item, label: `${field.label} #${index + 1}` }}
            path={`${path}.${index}`}
            value={v}
            ctx={ctx}
            onChange={(next) => onChange(items.map((old, i) => (i === index ? (next ?? null) : old)))}
          />
          {!ctx.readOnly && (
            <button type="button" className="link" onClick={() => onChange(items.filter((_, i) => i !== index))}>
              Remove
            </button>
          )}
        </div>
      ))}
      {!ctx.readOnly && (
        <button type="button" onClick={() => onChange([...items, blank])}>
          Add {field.label.toLowerCase()}
        </button>
      )}
    </div>
  );
}

function ObjectField({ field, path, value, onChange, ctx }: FieldProps) {
  const enabled = value !== undefined && value !== null;
  if (field.nullable && !enabled) {
    return (
      <button type="button" id={controlId(path)} disabled={ctx.readOnly} onClick={() => onChange({})}>
        Set {field.label.toLowerCase()}
      </button>
    );
  }
  return (
    <fieldset className="lf-object" id={controlId(path)}>
      {(field.fields ?? []).map((child) => (
        <Field
          key={child.name}
          field={child}
          path={`${path}.${child.name}`}
          value={(value as JsonObject | undefined)?.[child.name]}
          ctx={ctx}
          onChange={(v) => onChange(withValue(value as JsonObject, child.name, v))}
        />
      ))}
      {field.nullable && !ctx.readOnly && (
        <button type="button" className="link" onClick={() => onChange(undefined)}>
          Remove {field.label.toLowerCase()}
        </button>
      )}
    </fieldset>
  );
}

function Control(props: FieldProps) {
  const { field, path, value, onChange, ctx } = props;
  const shown = shownValue(field, value);
  const id = controlId(path);
  switch (field.kind) {
    case "boolean":
      return (
        <input id={id} type="checkbox" checked={shown === true} disabled={ctx.readOnly} onChange={(e) => onChange(e.target.checked)} />
      );
    case "enum":
      return (
        <select
          id={id}
          value={shown === undefined || shown === null ? "" : String(shown)}
          disabled={ctx.readOnly}
          onChange={(e) => onChange(field.options!.find((o) => String(o) === e.target.value) ?? undefined)}
        >
          {(shown === undefined || shown === null) && <option value="">—</option>}
          {field.options!.map((o) => (
            <option key={String(o)} value={String(o)}>
              {String(o)}
            </option>
          ))}
        </select>
      );
    case "credential":
      return (
        <select id={id} value={typeof shown === "string" ? shown : ""} disabled={ctx.readOnly} onChange={(e) => onChange(e.target.value || (field.nullable ? undefined : ""))}>
          <option value="">(none)</option>
          {typeof shown === "string" && shown && !ctx.credentials.some((c) => c.name === shown) && (
            <option value={shown}>{shown} (not in the store)</option>
          )}
          {ctx.credentials.map((c) => (
            <option key={c.name} value={c.name}>
              {c.name} ({c.type})
            </option>
          ))}
        </select>
      );
    case "number":
    case "integer":
      return <NumberInput {...props} />;
    case "string":
      return (
        <input
          id={id}
          type="text"
          value={typeof shown === "string" ? shown : ""}
          placeholder={field.required ? "required" : undefined}
          disabled={ctx.readOnly}
          onChange={(e) => onChange(e.target.value === "" && !field.required ? undefined : e.target.value)}
        />
      );
    case "object":
      return <ObjectField {...props} />;
    case "map":
      return <MapField {...props} />;
    case "array":
      return <ArrayField {...props} />;
    default:
      return <JsonField {...props} />;
  }
}

function NumberInput({ field, path, value, onChange, ctx }: FieldProps) {
  const shown = shownValue(field, value);
  const [text, setText] = useState(shown === undefined || shown === null ? "" : String(shown));
  useEffect(() => setText(shown === undefined || shown === null ? "" : String(shown)), [shown]);
  return (
    <input
      id={controlId(path)}
      type="number"
      step={field.kind === "integer" ? 1 : "any"}
      value={text}
      disabled={ctx.readOnly}
      onChange={(e) => {
        setText(e.target.value);
        const parsed = parseNumber(field, e.target.value);
        if (parsed !== "invalid") onChange(parsed);
      }}
    />
  );
}

export function Field(props: FieldProps) {
  const { field, path, ctx } = props;
  const hasError = (ctx.errors.get(path) ?? []).length > 0;
  return (
    <div className={`lf-field${hasError ? " lf-has-error" : ""}`} data-path={path}>
      <FieldLabel field={field} path={path} />
      <Control {...props} />
      {field.kind === "string" && <Preview path={path} text={props.value} ctx={ctx} />}
      <Help field={field} />
      <Errors path={path} ctx={ctx} />
    </div>
  );
}

export function SchemaForm(props: {
  fields: FormField[];
  value: JsonObject;
  prefix: string;
  onChange: (value: JsonObject) => void;
  ctx: FormContext;
}) {
  const { fields, value, prefix, onChange, ctx } = props;
  return (
    <div className="lf-form">
      <Errors path={prefix} ctx={ctx} />
      {fields.map((field) => (
        <Field
          key={field.name}
          field={field}
          path={`${prefix}.${field.name}`}
          value={value[field.name]}
          ctx={ctx}
          onChange={(v) => onChange(withValue(value, field.name, v))}
        />
      ))}
    </div>
  );
}
