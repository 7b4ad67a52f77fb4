import { sql } from "kysely";
import { Hono, type Context } from "hono";
import { z } from "zod";
import { artifactRoutes } from "../artifacts/routes";
import { credentialRoutes } from "../credentials/routes";
import { deploymentRoutes } from "../deployments/routes";
import { jobRoutes } from "../jobs/routes";
import { profileRoutes } from "../profiles/routes";
import { scheduleRoutes } from "../schedules/routes";
import { sessionRoutes } from "../sessions/routes";
import { mountRecordingView } from "../sessions/view";
import { webhookRoutes } from "../webhooks/routes";
import { workflowRoutes } from "../workflows/routes";
import { mountDashboard } from "../ui/routes";
import { AppError } from "../errors";
import type { VaultUnavailableError } from "../vault/vault";
import { mountMetrics } from "../metrics/routes";
import { VERSION } from "../version";
import { accountRequest } from "./account";
import { authenticate } from "./auth";
import { toAppError } from "./failure";
import { ConnectionClosed, errorBody, parseBody, readBody, wrap, type ParsedBody } from "./envelope";
import { refuseNearMissFields } from "./near-miss";
import { buildOpenApi } from "./openapi";
import { RateLimiter } from "./rate-limit";
import { fixedBody, sendJson } from "./respond";
import { unservedMessage } from "./unserved";
import type { AppDeps, Caller, RouteDef } from "./route";

/** Every API route. Later capabilities add theirs here; the shared test suites iterate this list. */
export const apiRoutes: readonly RouteDef[] = [
  ...credentialRoutes,
  ...jobRoutes,
  ...artifactRoutes,
  ...workflowRoutes,
  ...webhookRoutes,
  ...scheduleRoutes,
  ...deploymentRoutes,
  ...sessionRoutes,
  ...profileRoutes,
] as unknown as RouteDef[];

/** Builds the Hono app. It never listens: tests, the binary and the Node entry all serve this. */
export function createApp(deps: AppDeps, routes: readonly RouteDef[] = apiRoutes): Hono {
  const app = new Hono();
  const byPath = new Map<string, RouteDef>(routes.map((r) => [r.path, r]));
  const limiter = new RateLimiter(deps.config.rateLimit, deps.nowMs);
  // Built on first request, not at start: it is most of a start's CPU (zod's JSON Schemas, ~20 ms measured).
  let openapiBody: ((c: Context) => Promise<Response>) | undefined;
  const openapi = (c: Context) => (openapiBody ??= fixedBody(JSON.stringify(buildOpenApi(routes, VERSION)), "application/json"))(c);

  app.get("/healthz", (c) => sendJson(c, { status: "ok" }));
  app.get("/readyz", async (c) => {
    let stale: VaultUnavailableError | undefined;
    try {
      await sql`SELECT 1`.execute(deps.db);
      stale = await deps.vault.staleMasterKey(deps.db);
    } catch {
      return sendJson(c, { status: "unavailable", message: "The database is not reachable." }, { status: 503 });
    }
    if (stale) return sendJson(c, { status: "unavailable", master_key_id: deps.vault.keyId, message: stale.message }, { status: 503 });
    return sendJson(c, { status: "ready", master_key_id: deps.vault.keyId });
  });
  app.get("/v1/openapi.json", openapi);
  mountMetrics(app, deps.db);
  mountRecordingView(app, deps);
  mountDashboard(app, deps, routes, requestOrigin);
  // Hono answers HEAD with the GET handler; every other method on these paths is a 405.
  const getPaths = new Set(app.routes.filter((r) => r.method === "GET").map((r) => r.path));

  app.all("*", async (c) => {
    const started = performance.now();
    const requestId = crypto.randomUUID();
    let enveloped = false;
    let caller: Caller | undefined;
    let status: number;
    let response: Response;
    // The body is read once, lazily. Errors mirror the request's form, so an
    // early refusal (unknown route, bad key, rate limit) still reads the body
    // to learn that form; a body too large to read gets a plain error.
    let body: ParsedBody | undefined;
    let bodyError: unknown;
    const settleBody = async () => {
      if (body || bodyError) return;
      try {
        // Uploads of code (deployments/create) have a limit of their own.
        const limit = byPath.get(c.req.path)?.largeBody ? deps.config.deployments.maxBodyBytes : deps.config.maxBodyBytes;
        body = parseBody(await readBody(c.req.raw, limit));
        enveloped = body.enveloped;
      } catch (error) {
        // Nobody is left to answer: no refusal of any kind applies.
        if (error instanceof ConnectionClosed) throw error;
        bodyError = error;
      }
    };
    try {
      const route = byPath.get(c.req.path);
      if (!route) {
        await settleBody();
        if (getPaths.has(c.req.path)) throw methodNotAllowed(c.req.method, c.req.path, ["GET", "HEAD"]);
        throw new AppError(
          "NOT_FOUND",
          unservedMessage(c.req.method, c.req.path) ??
            `No route ${c.req.method} ${c.req.path}. API routes are POST /v1/<namespace>/<procedure>; see /v1/openapi.json.`,
        );
      }
      if (c.req.method !== "POST") {
        await settleBody();
        throw methodNotAllowed(c.req.method, c.req.path, ["POST"]);
      }
      // A missing, unknown or revoked key is refused before the body counts for anything.
      try {
        caller = await authenticate(deps, c.req.header("x-api-key"));
      } catch (error) {
        await settleBody();
        throw error;
      }
      const wait = limiter.take(caller.apiKeyId);
      await settleBody();
      if (wait > 0) {
        throw new AppError("TOO_MANY_REQUESTS", `Too many requests for this API key; retry in ${wait} s.`, {
          headers: { "retry-after": String(wait) },
          data: { retry_after_seconds: wait },
        });
      }
      if (bodyError) throw bodyError;
      if (!body || body.invalidJson) throw new AppError("BAD_REQUEST", "The request body is not valid JSON.");
      refuseNearMissFields(route.input, body.input);
      const parsed = route.input.safeParse(body.input);
      if (!parsed.success) throw validationError(parsed.error);
      const request = c.req.raw;
      // The origin is worked out (a URL parse) only by the few routes that use it.
      const output = await route.handler({ deps, caller, requestId, get origin() { return requestOrigin(request); } }, parsed.data);
      status = 200;
      response = await sendJson(c, wrap(enveloped, output));
    } catch (thrown) {
      if (thrown instanceof ConnectionClosed) {
        // 499 (nginx's "client closed request"): counted and logged as the
        // client's doing, never as a 500. The answer reaches no one.
        status = 499;
        response = new Response(null, { status });
      } else {
        const error = toAppError(thrown, deps, requestId);
        status = error.status;
        response = await sendJson(c, wrap(enveloped, errorBody(error)), { status: error.status, headers: error.headers });
      }
    }
    // The route label is the route table's path or "unmatched".
    const route = byPath.has(c.req.path) ? c.req.path : "unmatched";
    accountRequest(deps, { route, method: c.req.method, path: c.req.path, status, started, requestId, tenantId: caller?.tenantId ?? null });
    response.headers.set("x-request-id", requestId);
    return response;
  });

  return app;
}

export function requestOrigin(request: Request): string {
  const url = new URL(request.url);
  const proto = request.headers.get("x-forwarded-proto")?.split(",")[0]?.trim().toLowerCase();
  return proto === "https" ? `https://${url.host}` : url.origin;
}

function methodNotAllowed(method: string, path: string, allowed: readonly string[]): AppError {
  const takes = allowed[0] === "POST" ? "takes POST with a JSON body" : "takes GET (or HEAD)";
  return new AppError("METHOD_NOT_ALLOWED", `${method} is not allowed on ${path}: this route ${takes}.`, {
    headers: { allow: allowed.join(", ") },
    data: { allow: [...allowed] },
  });
}

export function validationError(error: z.ZodError): AppError {
  const issues = error.issues.map((i) => ({ path: i.path.map(String), message: i.message }));
  const summary = issues
    .slice(0, 5)
    .map((i) => `${i.path.length ? i.path.join(".") : "body"} ${i.message}`)
    .join("; ");
  return new AppError("BAD_REQUEST", `Invalid input: ${summary}.`, { data: { issues } });
}

export type { Context };
