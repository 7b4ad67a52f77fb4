import { sql } from "kysely";
import { Hono, type Context } from "hono";
import { z } from "zod";
import { credentialRoutes } from "../credentials/routes";
import { deploymentRoutes } from "../deployments/routes";
import { jobRoutes } from "../jobs/routes";
import { scheduleRoutes } from "../schedules/routes";
import { webhookRoutes } from "../webhooks/routes";
import { workflowRoutes } from "../workflows/routes";
import { AppError } from "../errors";
import { VaultUnavailableError } from "../vault/vault";
import { httpRequestDuration, httpRequests, methodLabel } from "../metrics/registry";
import { mountMetrics } from "../metrics/routes";
import { VERSION } from "../version";
import { authenticate } from "./auth";
import { errorBody, parseBody, readBody, wrap, type ParsedBody } from "./envelope";
import { refuseNearMissFields } from "./near-miss";
import { buildOpenApi } from "./openapi";
import { RateLimiter } from "./rate-limit";
import { unservedMessage } from "./unserved";
import type { AppDeps, Caller, RouteDef } from "./route";

/** Every API route. Later capabilities add theirs here; the shared test suites iterate this list. */
export const apiRoutes: readonly RouteDef[] = [
  ...credentialRoutes,
  ...jobRoutes,
  ...workflowRoutes,
  ...webhookRoutes,
  ...scheduleRoutes,
  ...deploymentRoutes,
] as unknown as RouteDef[];

/** Builds the Hono app. It never listens: tests, the binary and the Node entry all serve this. */
export function createApp(deps: AppDeps, routes: readonly RouteDef[] = apiRoutes): Hono {
  const app = new Hono();
  const byPath = new Map<string, RouteDef>(routes.map((r) => [r.path, r]));
  const limiter = new RateLimiter(deps.config.rateLimit, deps.nowMs);
  const openapi = JSON.stringify(buildOpenApi(routes, VERSION));

  app.get("/healthz", (c) => c.json({ status: "ok" }));
  app.get("/readyz", async (c) => {
    let stale: VaultUnavailableError | undefined;
    try {
      await sql`SELECT 1`.execute(deps.db);
      stale = await deps.vault.staleMasterKey(deps.db);
    } catch {
      return c.json({ status: "unavailable", message: "The database is not reachable." }, 503);
    }
    if (stale) return c.json({ status: "unavailable", master_key_id: deps.vault.keyId, message: stale.message }, 503);
    return c.json({ status: "ready", master_key_id: deps.vault.keyId });
  });
  app.get("/v1/openapi.json", (c) => c.body(openapi, 200, { "content-type": "application/json" }));
  mountMetrics(app, deps.db);

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
        bodyError = error;
      }
    };
    try {
      const route = byPath.get(c.req.path);
      if (!route || c.req.method !== "POST") {
        await settleBody();
        throw new AppError(
          "NOT_FOUND",
          route
            ? `No route ${c.req.method} ${c.req.path}. This route takes POST with a JSON body.`
            : (unservedMessage(c.req.method, c.req.path) ??
                `No route ${c.req.method} ${c.req.path}. API routes are POST /v1/<namespace>/<procedure>; see /v1/openapi.json.`),
        );
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
      const output = await route.handler({ deps, caller, requestId }, parsed.data);
      status = 200;
      response = c.json(wrap(enveloped, output) as object, 200);
    } catch (thrown) {
      const error = toAppError(thrown, deps, requestId);
      status = error.status;
      response = c.json(wrap(enveloped, errorBody(error)) as object, error.status as 400, error.headers);
    }
    // The route label is the route table's path or "unmatched", never the raw path: bounded cardinality.
    const routeLabel = byPath.has(c.req.path) ? c.req.path : "unmatched";
    httpRequests.inc({ route: routeLabel, method: methodLabel(c.req.method), status: String(status) });
    httpRequestDuration.observe({ route: routeLabel }, (performance.now() - started) / 1000);
    if (deps.config.requestLog) {
      deps.log.log("info", "request", {
        request_id: requestId,
        method: c.req.method,
        path: c.req.path,
        status,
        duration_ms: Math.round((performance.now() - started) * 1000) / 1000,
        tenant_id: caller?.tenantId ?? null,
      });
    }
    response.headers.set("x-request-id", requestId);
    return response;
  });

  return app;
}

function validationError(error: z.ZodError): AppError {
  const issues = error.issues.map((i) => ({ path: i.path.map(String), message: i.message }));
  const summary = issues
    .slice(0, 5)
    .map((i) => `${i.path.length ? i.path.join(".") : "body"} ${i.message}`)
    .join("; ");
  return new AppError("BAD_REQUEST", `Invalid input: ${summary}.`, { data: { issues } });
}

/** Anything that is not an AppError is a bug: the client gets a generic 500, the log gets the detail. */
function toAppError(thrown: unknown, deps: AppDeps, requestId: string): AppError {
  if (thrown instanceof AppError) return thrown;
  if (thrown instanceof VaultUnavailableError) {
    // Not a bug, and not the client's doing: the operator must act. The log says exactly what; the client, whom to ask.
    deps.log.log("error", thrown.message, { request_id: requestId, problem: thrown.problem });
    return new AppError(thrown.problem === "master_key_rotated" ? "SERVICE_UNAVAILABLE" : "INTERNAL_SERVER_ERROR", thrown.clientMessage, {
      data: { problem: thrown.problem },
    });
  }
  deps.log.log("error", "unhandled error", {
    request_id: requestId,
    error: thrown instanceof Error ? `${thrown.name}: ${thrown.message}` : "non-error thrown",
  });
  return new AppError("INTERNAL_SERVER_ERROR", `Something went wrong on the server (request ${requestId}); the server log has the detail.`);
}

export type { Context };
