import { z } from "zod";
import { AppError } from "../errors";

/**
 * Unknown fields in a request are ignored (API.md: forward compatibility with
 * newer CLIs), except a near miss of one of the route's own fields: the same
 * letters, ignoring case, '_' and '-' (`job_id` for `jobId`, `Workflow` for
 * `workflow`). Ignored, such a field silently widens what the request does:
 * `logs/list {"job_id": ...}` listed every job's lines. It is a 400 that names
 * the field meant, and nothing is done.
 */
export function refuseNearMissFields(schema: z.ZodType, input: unknown): void {
  if (typeof input !== "object" || input === null || Array.isArray(input)) return;
  const fields = fieldsOf(schema);
  const misses: [given: string, meant: string][] = [];
  for (const given of Object.keys(input)) {
    if (fields.exact.has(given)) continue;
    const meant = fields.byLooseName.get(looseName(given));
    if (meant !== undefined) misses.push([given, meant]);
  }
  if (misses.length === 0) return;
  throw new AppError("BAD_REQUEST", misses.map(([given, meant]) => `Unknown field "${given}"; did you mean "${meant}"?`).join(" "), {
    data: { issues: misses.map(([given, meant]) => ({ path: [given], message: `is not a field of this route; did you mean "${meant}"?` })) },
  });
}

/** The spelling two names share when they differ only in case, '_' and '-'. */
export const looseName = (name: string) => name.toLowerCase().replace(/[_-]/g, "");

interface Fields {
  exact: ReadonlySet<string>;
  byLooseName: ReadonlyMap<string, string>;
}

const cache = new WeakMap<z.ZodType, Fields>();

/** The top-level fields of a route's input, read from its JSON Schema (the one the OpenAPI document shows). */
function fieldsOf(schema: z.ZodType): Fields {
  let fields = cache.get(schema);
  if (!fields) {
    const json = z.toJSONSchema(schema, { io: "input", unrepresentable: "any" }) as { properties?: Record<string, unknown> };
    const names = Object.keys(json.properties ?? {});
    fields = { exact: new Set(names), byLooseName: new Map(names.map((name) => [looseName(name), name])) };
    cache.set(schema, fields);
  }
  return fields;
}
