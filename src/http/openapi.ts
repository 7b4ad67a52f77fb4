import { z } from "zod";
import type { RouteDef } from "./route";

const errorSchema = {
  type: "object",
  required: ["defined", "success", "code", "status", "message", "data"],
  properties: {
    defined: { type: "boolean" },
    success: { const: false },
    code: {
      enum: ["BAD_REQUEST", "UNAUTHORIZED", "NOT_FOUND", "CONFLICT", "PAYLOAD_TOO_LARGE", "TOO_MANY_REQUESTS", "INTERNAL_SERVER_ERROR", "SERVICE_UNAVAILABLE"],
    },
    status: { type: "integer" },
    message: { type: "string" },
    data: { type: "object" },
  },
};

const enveloped = (schema: object) => ({
  oneOf: [schema, { type: "object", required: ["json"], properties: { json: schema, meta: {} }, additionalProperties: false }],
});

/** The OpenAPI document, generated from the same zod schemas the routes validate with. */
export function buildOpenApi(routes: readonly RouteDef[], version: string) {
  const paths: Record<string, unknown> = {};
  for (const route of routes) {
    const input = z.toJSONSchema(route.input, { io: "input", unrepresentable: "any" });
    const output = z.toJSONSchema(route.output, { io: "output", unrepresentable: "any" });
    delete (input as { $schema?: string }).$schema;
    delete (output as { $schema?: string }).$schema;
    const [, , namespace] = route.path.split("/");
    paths[route.path] = {
      post: {
        summary: route.summary,
        tags: [namespace],
        security: [{ apiKey: [] }],
        requestBody: { required: false, content: { "application/json": { schema: enveloped(input) } } },
        responses: {
          "200": { description: "Success; enveloped when the request was.", content: { "application/json": { schema: enveloped(output) } } },
          default: { description: "Error", content: { "application/json": { schema: enveloped(errorSchema) } } },
        },
      },
    };
  }
  for (const [path, description] of [
    ["/healthz", "The process is alive."],
    ["/readyz", "The database is reachable and the master key verified and still current (503 after a rotate-key by another process)."],
    ["/metrics", "Prometheus metrics (text format 0.0.4); unauthenticated, no tenant data."],
  ] as const) {
    paths[path] = { get: { summary: description, responses: { "200": { description }, "503": { description: "Not ready." } } } };
  }
  return {
    openapi: "3.1.0",
    info: {
      title: "Understudy",
      version,
      description: "Libretto Cloud compatible API. Every body may be plain or enveloped as {\"json\": ...}; the response mirrors it.",
    },
    components: { securitySchemes: { apiKey: { type: "apiKey", in: "header", name: "x-api-key" } } },
    paths,
  };
}
