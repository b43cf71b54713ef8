import { describe, expect, it } from "vitest";
import { fieldsOf, missingRequired, parseNumber, withValue } from "./schemaForm";
import type { JsonObject } from "./types";

// An HTTP request's config schema as pydantic writes it (trimmed).
const HTTP: JsonObject = {
  $defs: {
    Pagination: {
      type: "object",
      properties: {
        next_link: { default: "header", enum: ["header", "json"], title: "Next Link", type: "string" },
        max_pages: { default: 10, maximum: 100, minimum: 1, title: "Max Pages", type: "integer" },
      },
    },
  },
  properties: {
    method: { default: "GET", enum: ["GET", "POST"], title: "Method", type: "string" },
    url: { title: "Url", type: "string", description: "Where the request goes." },
    headers: { additionalProperties: { type: "string" }, title: "Headers", type: "object" },
    json_body: { default: null, title: "Json Body" },
    credential: { anyOf: [{ type: "string" }, { type: "null" }], default: null, title: "Credential" },
    paginate: { anyOf: [{ $ref: "#/$defs/Pagination" }, { type: "null" }], default: null },
    timeout_seconds: { default: 10.0, title: "Timeout Seconds", type: "number" },
    honours_idempotency_key: { default: false, title: "Honours Idempotency Key", type: "boolean" },
    tags: { type: "array", items: { type: "string" }, title: "Tags" },
  },
  required: ["url"],
  type: "object",
};

describe("schema to form", () => {
  const fields = fieldsOf(HTTP, HTTP, ["credential"]);
  const byName = Object.fromEntries(fields.map((f) => [f.name, f]));

  it("keeps the schema's order and marks required fields", () => {
    expect(fields.map((f) => f.name)).toEqual([
      "method", "url", "headers", "json_body", "credential", "paginate",
      "timeout_seconds", "honours_idempotency_key", "tags",
    ]);
    expect(byName.url.required).toBe(true);
    expect(byName.method.required).toBe(false);
  });

  it("maps enums to choices with their default", () => {
    expect(byName.method.kind).toBe("enum");
    expect(byName.method.options).toEqual(["GET", "POST"]);
    expect(byName.method.default).toBe("GET");
  });

  it("uses the description as help text", () => {
    expect(byName.url.description).toBe("Where the request goes.");
  });

  it("turns a credential field into a choice from the store, nullable", () => {
    expect(byName.credential.kind).toBe("credential");
    expect(byName.credential.nullable).toBe(true);
  });

  it("resolves a nullable nested object through $ref", () => {
    const paginate = byName.paginate;
    expect(paginate.kind).toBe("object");
    expect(paginate.nullable).toBe(true);
    expect(paginate.label).toBe("Paginate");
    expect(paginate.fields?.map((f) => [f.name, f.kind, f.default])).toEqual([
      ["next_link", "enum", "header"],
      ["max_pages", "integer", 10],
    ]);
  });

  it("tells maps, arrays, numbers, booleans and free JSON apart", () => {
    expect(byName.headers.kind).toBe("map");
    expect(byName.tags.kind).toBe("array");
    expect(byName.tags.item?.kind).toBe("string");
    expect(byName.timeout_seconds.kind).toBe("number");
    expect(byName.honours_idempotency_key.kind).toBe("boolean");
    expect(byName.json_body.kind).toBe("json");
  });

  it("finds required fields left empty, nested ones included", () => {
    const nested: JsonObject = {
      type: "object",
      properties: {
        target: {
          type: "object",
          properties: { host: { type: "string" } },
          required: ["host"],
        },
        name: { type: "string" },
      },
      required: ["name", "target"],
    };
    const f = fieldsOf(nested);
    expect(missingRequired(f, {})).toEqual(["config.target", "config.name"]);
    expect(missingRequired(f, { name: "x", target: {} })).toEqual(["config.target.host"]);
    expect(missingRequired(fields, { url: "https://example.test" })).toEqual([]);
  });

  it("parses numbers strictly and removes emptied values", () => {
    expect(parseNumber(byName.timeout_seconds, "2.5")).toBe(2.5);
    expect(parseNumber(byName.timeout_seconds, "")).toBeUndefined();
    expect(parseNumber({ ...byName.timeout_seconds, kind: "integer" }, "2.5")).toBe("invalid");
    expect(withValue({ a: 1, b: 2 }, "a", undefined)).toEqual({ b: 2 });
  });
});
