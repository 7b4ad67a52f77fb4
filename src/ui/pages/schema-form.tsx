/** @jsxImportSource hono/jsx */
import { AppError } from "../../errors";

/**
 * A form generated from a workflow's input JSON Schema: one field per
 * top-level property, named `param.<key>`, and the submitted form coerced
 * back into params. A schema that is not an object schema (or none) gets one
 * JSON textarea, `params_json`.
 */

export type FieldKind = "text" | "password" | "select" | "number" | "integer" | "boolean" | "json";

export interface SchemaField {
  key: string;
  kind: FieldKind;
  required: boolean;
  /** For a select: the allowed strings. */
  options?: string[];
  description?: string;
  default?: unknown;
}

export const PARAM_PREFIX = "param.";
export const PARAMS_JSON = "params_json";

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null && !Array.isArray(value);

/** A property's schema with a nullable wrapper (anyOf/oneOf [X, null], type [X, "null"]) taken off. */
function unwrap(schema: Record<string, unknown>): Record<string, unknown> {
  for (const key of ["anyOf", "oneOf"] as const) {
    const branches = schema[key];
    if (Array.isArray(branches)) {
      const real = branches.filter((b) => isObject(b) && b.type !== "null");
      if (real.length === 1 && isObject(real[0])) return { ...schema, ...real[0], [key]: undefined };
    }
  }
  return schema;
}

function typeOf(schema: Record<string, unknown>): string | undefined {
  const type = schema.type;
  if (typeof type === "string") return type;
  if (Array.isArray(type)) {
    const real = type.filter((t) => t !== "null");
    return real.length === 1 && typeof real[0] === "string" ? real[0] : undefined;
  }
  return undefined;
}

function kindOf(schema: Record<string, unknown>): Pick<SchemaField, "kind" | "options"> {
  const type = typeOf(schema);
  const enumValues = Array.isArray(schema.enum) ? schema.enum : typeof schema.const === "string" ? [schema.const] : undefined;
  if (enumValues && enumValues.length > 0 && enumValues.every((v) => typeof v === "string") && (type === "string" || type === undefined)) {
    return { kind: "select", options: enumValues as string[] };
  }
  switch (type) {
    case "string":
      return { kind: schema.format === "password" || schema.writeOnly === true ? "password" : "text" };
    case "number":
      return { kind: "number" };
    case "integer":
      return { kind: "integer" };
    case "boolean":
      return { kind: "boolean" };
    default:
      return { kind: "json" };
  }
}

/** The fields of an object schema, in its properties' order; null when the schema is absent or not an object schema. */
export function fieldsOf(schema: unknown): SchemaField[] | null {
  if (!isObject(schema)) return null;
  const objectLike = schema.type === "object" || (schema.type === undefined && isObject(schema.properties));
  if (!objectLike || !isObject(schema.properties)) return null;
  const required = new Set(Array.isArray(schema.required) ? schema.required.filter((r): r is string => typeof r === "string") : []);
  return Object.entries(schema.properties).map(([key, raw]) => {
    const property = isObject(raw) ? unwrap(raw) : {};
    return {
      key,
      ...kindOf(property),
      required: required.has(key),
      ...(typeof property.description === "string" ? { description: property.description } : {}),
      ...("default" in property ? { default: property.default } : {}),
    };
  });
}

const fieldId = (key: string) => `param-${key.replace(/[^A-Za-z0-9_-]/g, "_")}`;

function initialText(field: SchemaField, values: URLSearchParams | undefined): string {
  const submitted = values?.get(PARAM_PREFIX + field.key);
  if (submitted !== null && submitted !== undefined) return field.kind === "password" ? "" : submitted;
  if (field.default === undefined || field.kind === "password") return "";
  return field.kind === "json" ? JSON.stringify(field.default, null, 2) : String(field.default);
}

function FieldLabel(props: { field: SchemaField }) {
  const { field } = props;
  return (
    <>
      <span class="field-name">{field.key}</span>
      {field.required ? <span class="required"> (required)</span> : <span class="muted"> (optional)</span>}
      {field.kind === "json" ? <span class="hint">JSON value.</span> : null}
      {field.description ? <span class="hint">{field.description}</span> : null}
    </>
  );
}

function Field(props: { field: SchemaField; values: URLSearchParams | undefined }) {
  const { field, values } = props;
  const name = PARAM_PREFIX + field.key;
  const id = fieldId(field.key);
  const value = initialText(field, values);
  const required = field.required || undefined;
  switch (field.kind) {
    case "boolean": {
      const checked = values ? values.get(name) === "true" : field.default === true;
      return (
        <label class="check" for={id}>
          <input type="checkbox" id={id} name={name} value="true" checked={checked || undefined} data-kind="boolean" />
          <FieldLabel field={field} />
        </label>
      );
    }
    case "select":
      return (
        <label for={id}>
          <FieldLabel field={field} />
          <select id={id} name={name} required={required} data-kind="select">
            {field.required ? null : <option value="">(not set)</option>}
            {(field.options ?? []).map((o) => (
              <option value={o} selected={o === value || undefined}>
                {o}
              </option>
            ))}
          </select>
        </label>
      );
    case "json":
      return (
        <label for={id}>
          <FieldLabel field={field} />
          <textarea id={id} name={name} required={required} rows={4} spellcheck={false} data-kind="json">
            {value}
          </textarea>
        </label>
      );
    case "number":
    case "integer":
      return (
        <label for={id}>
          <FieldLabel field={field} />
          <input type="number" id={id} name={name} value={value} step={field.kind === "integer" ? "1" : "any"} required={required} data-kind={field.kind} />
        </label>
      );
    default:
      return (
        <label for={id}>
          <FieldLabel field={field} />
          <input
            type={field.kind === "password" ? "password" : "text"}
            id={id}
            name={name}
            value={value}
            required={required}
            autocomplete="off"
            spellcheck={false}
            data-kind={field.kind}
          />
        </label>
      );
  }
}

/** The params part of the start form: a field per property, or one JSON textarea. */
export function SchemaFields(props: { fields: SchemaField[] | null; values?: URLSearchParams | undefined }) {
  if (props.fields === null) {
    const value = props.values?.get(PARAMS_JSON) ?? "{}";
    return (
      <label for="params-json">
        Params (JSON object)
        <span class="hint">The workflow declares no input schema of named fields: give its params as one JSON object.</span>
        <textarea id="params-json" name={PARAMS_JSON} rows={6} spellcheck={false}>
          {value}
        </textarea>
      </label>
    );
  }
  if (props.fields.length === 0) return <p class="muted">This workflow takes no params.</p>;
  return (
    <>
      {props.fields.map((field) => (
        <Field field={field} values={props.values} />
      ))}
    </>
  );
}

const bad = (message: string) => new AppError("BAD_REQUEST", message);

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw bad(`${what} is not valid JSON: ${error instanceof Error ? error.message : "it could not be parsed"}.`);
  }
}

/** A whole number of at least 1 (or undefined when empty); anything else is a 400 naming the field. */
export function optionalNumber(form: URLSearchParams, name: string, label: string): number | undefined {
  const text = (form.get(name) ?? "").trim();
  if (text === "") return undefined;
  const value = Number(text);
  if (!Number.isFinite(value)) throw bad(`Field "${label}" must be a number, not "${text.slice(0, 100)}".`);
  return value;
}

/**
 * The params of a submitted start form, coerced per the fields: empty
 * optional fields are left out; a bad number, bad JSON or a missing
 * required value is a 400 naming the field.
 */
export function paramsFromForm(fields: SchemaField[] | null, form: URLSearchParams): Record<string, unknown> {
  if (fields === null) {
    const text = (form.get(PARAMS_JSON) ?? "").trim();
    if (text === "") return {};
    const parsed = parseJson(text, `Field "Params (JSON object)"`);
    if (!isObject(parsed)) throw bad(`Field "Params (JSON object)" must be a JSON object, like {"key": "value"}.`);
    return parsed;
  }
  const params: Record<string, unknown> = {};
  for (const field of fields) {
    const name = PARAM_PREFIX + field.key;
    if (field.kind === "boolean") {
      // An unchecked box sends nothing: it means false.
      params[field.key] = form.get(name) === "true";
      continue;
    }
    const raw = form.get(name) ?? "";
    const text = field.kind === "text" || field.kind === "password" ? raw : raw.trim();
    if (text === "") {
      if (field.required) throw bad(`Field "${field.key}" is required.`);
      continue;
    }
    switch (field.kind) {
      case "number":
      case "integer": {
        const value = Number(text);
        if (!Number.isFinite(value)) throw bad(`Field "${field.key}" must be a number, not "${text.slice(0, 100)}".`);
        if (field.kind === "integer" && !Number.isInteger(value)) throw bad(`Field "${field.key}" must be a whole number, not "${text.slice(0, 100)}".`);
        params[field.key] = value;
        break;
      }
      case "json":
        params[field.key] = parseJson(text, `Field "${field.key}"`);
        break;
      case "select":
        if (field.options && !field.options.includes(text)) throw bad(`Field "${field.key}" must be one of ${field.options.join(", ")}.`);
        params[field.key] = text;
        break;
      default:
        params[field.key] = text;
    }
  }
  return params;
}
