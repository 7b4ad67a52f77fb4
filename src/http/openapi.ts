import { z } from "zod";
import { ERROR_CODES, statusOf, type ErrorCode } from "../errors";
import type { RouteDef } from "./route";

type Schema = Record<string, unknown>;

/** The error body of the contract, with every `data` field some error carries (grep `data:` in src when adding one). */
const errorSchema: Schema = {
  type: "object",
  required: ["defined", "success", "code", "status", "message", "data"],
  properties: {
    defined: { type: "boolean", const: false },
    success: { type: "boolean", const: false },
    code: { type: "string", enum: [...ERROR_CODES] },
    status: { type: "integer", description: "The HTTP status, repeated." },
    message: { type: "string", description: "A sentence a person can act on (the libretto CLI prints it)." },
    data: {
      type: "object",
      description: "Details; which fields appear depends on the error. Fields may be added.",
      properties: {
        issues: {
          type: "array",
          description: "400 (and a refused upload): what is wrong with the input.",
          items: {
            type: "object",
            required: ["path", "message"],
            properties: {
              path: { type: "array", items: { type: "string" }, description: "Where in the input, e.g. [\"viewport\", \"width\"]; empty for the body itself." },
              message: { type: "string" },
            },
          },
        },
        reason: { type: "string", description: "A refused upload: why (e.g. upload-too-large); a request the HTTP parser refused: the parser's code." },
        limit_bytes: { type: "integer", description: "413: the limit that was passed." },
        retry_after_seconds: { type: "integer", description: "429: when to retry (also in Retry-After)." },
        allow: { type: "array", items: { type: "string" }, description: "405: the methods the route takes (also in Allow)." },
        name: { type: "string", description: "409: the credential name that is taken." },
        job_ids: { type: "array", items: { type: "string", format: "uuid" }, description: "409: the queued or running jobs that reference the credential." },
        job_id: { type: "string", format: "uuid", description: "409: the schedule's job that is still running." },
        workflow: { type: "string", description: "409: the workflow that failed to load." },
        status: { type: "string", description: "409: the status of the job or delivery that refused." },
        next_attempt_at: { type: ["string", "null"], description: "409: when the pending delivery is next attempted." },
        webhook_endpoint_id: { type: "string", format: "uuid", description: "409: the endpoint of the delivery." },
        disabled_reason: { type: ["string", "null"], description: "409: why the endpoint is off." },
        credential_id: { type: "string", format: "uuid", description: "500: the credential whose stored value failed its integrity check." },
        problem: { type: "string", enum: ["data_key_missing", "master_key_rotated"], description: "500/503: stored data the server cannot use, and why." },
      },
      additionalProperties: true,
    },
  },
};

const enveloped = (schema: Schema): Schema => ({
  oneOf: [schema, { type: "object", required: ["json"], properties: { json: schema, meta: {} }, additionalProperties: false }],
});

const ERROR = { $ref: "#/components/schemas/Error" };

/** A documented error response for each status an API route can answer with. */
const errorResponses: Partial<Record<ErrorCode, { name: string; description: string; headers?: Schema }>> = {
  BAD_REQUEST: { name: "BadRequest", description: "The body is not JSON, or the input is invalid (data.issues says where)." },
  UNAUTHORIZED: { name: "Unauthorized", description: "No, an unknown or a revoked x-api-key (message: Invalid API key)." },
  NOT_FOUND: { name: "NotFound", description: "No such row for this tenant (another tenant's rows are reported the same way)." },
  CONFLICT: { name: "Conflict", description: "The change conflicts with the current state (data says with what)." },
  PAYLOAD_TOO_LARGE: { name: "PayloadTooLarge", description: "The body, or a value in it, is over its limit (data.limit_bytes)." },
  TOO_MANY_REQUESTS: {
    name: "TooManyRequests",
    description: "The API key's rate limit; retry after Retry-After seconds.",
    headers: { "Retry-After": { description: "Seconds to wait.", schema: { type: "integer" } } },
  },
  INTERNAL_SERVER_ERROR: {
    name: "InternalServerError",
    description: "A bug (the message names the request id), or stored data the server cannot read (data.problem); never a secret.",
  },
  SERVICE_UNAVAILABLE: {
    name: "ServiceUnavailable",
    description: "The master key was rotated by another process: restart this server with the new key (data.problem: master_key_rotated). Nothing was changed.",
  },
};

/** Every API route answers these: the body is read, the key checked, the rate limit applied (and a tenant key a rotation left behind is a 503). */
const EVERY_ROUTE: readonly ErrorCode[] = ["BAD_REQUEST", "UNAUTHORIZED", "PAYLOAD_TOO_LARGE", "TOO_MANY_REQUESTS", "SERVICE_UNAVAILABLE"];

/**
 * The errors a route answers beyond EVERY_ROUTE: what its service throws,
 * which the route's schemas cannot say. test/http/openapi.test.ts fails for
 * a route missing here.
 */
export const ROUTE_ERRORS: Record<string, readonly ("NOT_FOUND" | "CONFLICT")[]> = {
  "/v1/credentials/create": ["CONFLICT"],
  "/v1/credentials/upsert": [],
  "/v1/credentials/list": [],
  "/v1/credentials/get": ["NOT_FOUND"],
  "/v1/credentials/update": ["NOT_FOUND", "CONFLICT"],
  "/v1/credentials/delete": ["NOT_FOUND", "CONFLICT"],
  "/v1/jobs/create": ["NOT_FOUND", "CONFLICT"],
  "/v1/jobs/get": ["NOT_FOUND"],
  "/v1/jobs/list": [],
  "/v1/jobs/cancel": ["NOT_FOUND", "CONFLICT"],
  "/v1/jobs/artifacts": ["NOT_FOUND"],
  "/v1/artifacts/download": ["NOT_FOUND"],
  "/v1/logs/list": ["NOT_FOUND"],
  "/v1/tenant/settings": [],
  "/v1/workflows/list": [],
  "/v1/workflows/get": ["NOT_FOUND"],
  "/v1/webhooks/create": [],
  "/v1/webhooks/list": [],
  "/v1/webhooks/update": ["NOT_FOUND"],
  "/v1/webhooks/delete": ["NOT_FOUND"],
  "/v1/webhooks/deliveries": [],
  "/v1/webhooks/redeliver": ["NOT_FOUND", "CONFLICT"],
  "/v1/schedules/create": ["NOT_FOUND", "CONFLICT"],
  "/v1/schedules/list": [],
  "/v1/schedules/get": ["NOT_FOUND"],
  "/v1/schedules/update": ["NOT_FOUND", "CONFLICT"],
  "/v1/schedules/delete": ["NOT_FOUND"],
  "/v1/schedules/trigger": ["NOT_FOUND", "CONFLICT"],
  "/v1/sessions/create": ["NOT_FOUND", "CONFLICT"],
  "/v1/sessions/get": ["NOT_FOUND"],
  "/v1/sessions/close": ["NOT_FOUND"],
  "/v1/recordings/get": ["NOT_FOUND"],
  "/v1/deployments/create": [],
  "/v1/deployments/list": [],
  "/v1/deployments/sync": ["NOT_FOUND"],
  "/v1/deployments/get": ["NOT_FOUND"],
  "/v1/browserProfiles/ensure": [],
  "/v1/browserProfiles/list": [],
  "/v1/browserProfiles/delete": ["NOT_FOUND", "CONFLICT"],
  "/v1/browserProfiles/upload": [],
};

const responseRef = (code: ErrorCode) => ({ $ref: `#/components/responses/${errorResponses[code]!.name}` });

/** "/v1/credentials/create" -> "credentialsCreate": unique, URL-safe, and a method name in any generator. */
function operationId(path: string): string {
  const [, , namespace, procedure] = path.split("/");
  return `${namespace}${procedure!.charAt(0).toUpperCase()}${procedure!.slice(1)}`;
}

const text = (description: string, contentType: string, schema: Schema = { type: "string" }) => ({
  description,
  content: { [contentType]: { schema } },
});

/** The unauthenticated GET routes (and HEAD, which Hono answers with the same handler). */
function unauthenticatedRoutes(): Record<string, unknown> {
  // No route of these refuses anything itself; a malformed request is refused before it reaches one.
  const refused = {
    "4XX": {
      description: "The HTTP layer refused the request (malformed, or its headers too large); see the README on errors from the HTTP layer.",
      content: { "application/json": { schema: ERROR } },
    },
  };
  const get = (operation: { responses: Schema } & Schema) => ({
    get: { security: [], tags: ["server"], ...operation, responses: { ...operation.responses, ...refused } },
  });
  return {
    "/healthz": get({
      operationId: "healthz",
      summary: "The process is alive.",
      responses: {
        "200": text("Alive.", "application/json", { type: "object", required: ["status"], properties: { status: { const: "ok" } } }),
      },
    }),
    "/readyz": get({
      operationId: "readyz",
      summary: "The database is reachable and the master key verified and still current (503 after a rotate-key by another process).",
      responses: {
        "200": text("Ready.", "application/json", {
          type: "object",
          required: ["status", "master_key_id"],
          properties: { status: { const: "ready" }, master_key_id: { type: "string" } },
        }),
        "503": text("Not ready.", "application/json", {
          type: "object",
          required: ["status", "message"],
          properties: { status: { const: "unavailable" }, master_key_id: { type: "string" }, message: { type: "string" } },
        }),
      },
    }),
    "/metrics": get({
      operationId: "metrics",
      summary: "Prometheus metrics (text format 0.0.4); unauthenticated, no tenant data.",
      responses: { "200": text("The exposition.", "text/plain") },
    }),
    "/v1/openapi.json": get({
      operationId: "openapi",
      summary: "This document, generated from the schemas the routes validate with.",
      responses: { "200": text("The OpenAPI document.", "application/json", { type: "object" }) },
    }),
  };
}

/** The OpenAPI document, generated from the same zod schemas the routes validate with. */
export function buildOpenApi(routes: readonly RouteDef[], version: string) {
  const paths: Record<string, unknown> = {};
  const namespaces = new Set<string>();
  for (const route of routes) {
    const input = z.toJSONSchema(route.input, { io: "input", unrepresentable: "any" }) as Schema;
    const output = z.toJSONSchema(route.output, { io: "output", unrepresentable: "any" }) as Schema;
    delete input.$schema;
    delete output.$schema;
    const [, , namespace] = route.path.split("/");
    namespaces.add(namespace!);
    const codes = [...EVERY_ROUTE, ...(ROUTE_ERRORS[route.path] ?? [])].sort((a, b) => statusOf(a) - statusOf(b));
    paths[route.path] = {
      post: {
        operationId: operationId(route.path),
        summary: route.summary,
        tags: [namespace],
        security: [{ apiKey: [] }],
        // An empty body is the input {} (API.md): the body is required where {} is not valid input.
        requestBody: {
          required: !route.input.safeParse({}).success,
          content: { "application/json": { schema: enveloped(input) } },
        },
        responses: {
          "200": { description: "Success; enveloped when the request was.", content: { "application/json": { schema: enveloped(output) } } },
          ...Object.fromEntries(codes.map((code) => [String(statusOf(code)), responseRef(code)])),
          default: responseRef("INTERNAL_SERVER_ERROR"),
        },
      },
    };
  }
  Object.assign(paths, unauthenticatedRoutes());
  return {
    openapi: "3.1.0",
    info: {
      title: "Understudy",
      version,
      description:
        "Libretto Cloud compatible API. Every body may be plain or enveloped as {\"json\": ...}; the response mirrors it. " +
        "A wrong method on a route answers 405 with Allow. Answers of 1 KiB or more are compressed (br, gzip, deflate) when Accept-Encoding allows.",
      license: { name: "MIT", identifier: "MIT" },
    },
    servers: [{ url: "/", description: "This server." }],
    tags: [...[...namespaces].map((name) => ({ name, description: `/v1/${name}/*` })), { name: "server", description: "Health, readiness, metrics and this document; no API key." }],
    components: {
      securitySchemes: { apiKey: { type: "apiKey", in: "header", name: "x-api-key", description: "An API key made with `understudy keys create`." } },
      schemas: { Error: errorSchema },
      responses: Object.fromEntries(
        Object.values(errorResponses).map(({ name, description, headers }) => [
          name,
          { description, ...(headers ? { headers } : {}), content: { "application/json": { schema: enveloped(ERROR) } } },
        ]),
      ),
    },
    paths,
  };
}
