// From a connector's config JSON Schema (pydantic's model_json_schema) to the
// fields of the side panel's form. Pure, so it is unit-tested on its own.
import type { Json, JsonObject } from "./types";

export type FieldKind =
  | "string"
  | "number"
  | "integer"
  | "boolean"
  | "enum"
  | "credential"
  | "object"
  | "map"
  | "array"
  | "json";

export interface FormField {
  name: string;
  label: string;
  kind: FieldKind;
  required: boolean;
  // anyOf [X, null]: the field may be left empty (null) on purpose.
  nullable: boolean;
  default?: Json;
  description?: string;
  options?: Json[]; // enum
  fields?: FormField[]; // object
  item?: FormField; // array
}

type Schema = Record<string, Json>;

function resolve(schema: Schema, root: Schema): Schema {
  const ref = schema.$ref;
  if (typeof ref !== "string") return schema;
  const name = ref.replace(/^#\/\$defs\//, "");
  const defs = (root.$defs ?? {}) as Record<string, Schema>;
  const target = defs[name];
  if (!target) return {};
  // Sibling keywords (a description, a default) override the definition's.
  const { $ref: _ref, ...rest } = schema;
  return { ...resolve(target, root), ...rest };
}

/** Splits anyOf [X, {type: null}] into X and nullable. */
function unwrapNullable(schema: Schema, root: Schema): { schema: Schema; nullable: boolean } {
  const options = schema.anyOf;
  if (Array.isArray(options)) {
    const real = options.filter((o) => !(o && typeof o === "object" && (o as Schema).type === "null"));
    if (real.length === 1 && real.length < options.length) {
      const { anyOf: _anyOf, ...rest } = schema;
      return { schema: { ...resolve(real[0] as Schema, root), ...rest }, nullable: true };
    }
  }
  return { schema: resolve(schema, root), nullable: false };
}

export function humanise(name: string): string {
  const words = name.replace(/_/g, " ").trim();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

function kindOf(schema: Schema, name: string, credentialFields: string[]): FieldKind {
  if (credentialFields.includes(name)) return "credential";
  if (Array.isArray(schema.enum)) return "enum";
  if ("const" in schema) return "enum";
  switch (schema.type) {
    case "string":
      return "string";
    case "integer":
      return "integer";
    case "number":
      return "number";
    case "boolean":
      return "boolean";
    case "array":
      return "array";
    case "object":
      return schema.properties ? "object" : "map";
    default:
      return "json"; // Any, unions: edited as JSON
  }
}

export function fieldFrom(
  name: string,
  raw: Schema,
  root: Schema,
  required: boolean,
  credentialFields: string[] = [],
): FormField {
  const { schema, nullable } = unwrapNullable(raw, root);
  const kind = kindOf(schema, name, credentialFields);
  const field: FormField = {
    name,
    label: typeof raw.title === "string" && raw.title ? raw.title : humanise(name),
    kind,
    required,
    nullable,
  };
  if ("default" in raw) field.default = raw.default;
  else if ("default" in schema) field.default = schema.default;
  if (typeof schema.description === "string") field.description = schema.description;
  if (kind === "enum") field.options = Array.isArray(schema.enum) ? schema.enum : [schema.const];
  if (kind === "object") field.fields = fieldsOf(schema, root);
  if (kind === "array") {
    const items = (schema.items ?? {}) as Schema;
    field.item = fieldFrom("item", items, root, true);
  }
  return field;
}

/** The form's fields for an object schema, in the schema's order. */
export function fieldsOf(schema: JsonObject, root: JsonObject = schema, credentialFields: string[] = []): FormField[] {
  const properties = (schema.properties ?? {}) as Record<string, Schema>;
  const required = new Set((schema.required ?? []) as string[]);
  return Object.entries(properties).map(([name, spec]) =>
    fieldFrom(name, spec, root as Schema, required.has(name), credentialFields),
  );
}

/** The value a form control shows for a field with no value set. */
export function shownValue(field: FormField, value: Json | undefined): Json | undefined {
  return value === undefined ? field.default : value;
}

/** Parses what was typed into a number field; undefined when empty. */
export function parseNumber(field: FormField, text: string): number | undefined | "invalid" {
  if (text.trim() === "") return undefined;
  const n = Number(text);
  if (!Number.isFinite(n)) return "invalid";
  if (field.kind === "integer" && !Number.isInteger(n)) return "invalid";
  return n;
}

/** Sets (or, with undefined, removes) a key without mutating the object. */
export function withValue(object: JsonObject | undefined, key: string, value: Json | undefined): JsonObject {
  const copy: JsonObject = { ...(object ?? {}) };
  if (value === undefined) delete copy[key];
  else copy[key] = value;
  return copy;
}

/** Paths (config.a.b) of required fields with no value and no default. */
export function missingRequired(fields: FormField[], value: JsonObject | undefined, prefix = "config"): string[] {
  const missing: string[] = [];
  for (const field of fields) {
    const current = value?.[field.name];
    const path = `${prefix}.${field.name}`;
    if (current === undefined || current === "") {
      if (field.required && field.default === undefined) missing.push(path);
    } else if (field.kind === "object" && current && typeof current === "object" && !Array.isArray(current)) {
      missing.push(...missingRequired(field.fields ?? [], current as JsonObject, path));
    }
  }
  return missing;
}
