import type { z } from "zod";

// The dependencies and the caller belong to no HTTP layer: services take
// them too. They live in src/app-deps.ts; re-exported here for the routes.
export type { AppDeps, Caller, RunnerHandle, WebhookHandle } from "../app-deps";
import type { AppDeps, Caller } from "../app-deps";

export interface RouteContext {
  deps: AppDeps;
  caller: Caller;
  requestId: string;
  /**
   * The origin the client used to reach this server (scheme, host and port
   * of its request; https when a proxy says X-Forwarded-Proto: https): URLs
   * handed back point there.
   */
  origin: string;
}

/**
 * One route of the API: its zod input schema is the validation, the handler's
 * input type and the OpenAPI document at once; the output schema documents
 * the response.
 */
export interface RouteDef<I extends z.ZodType = z.ZodType, O extends z.ZodType = z.ZodType> {
  path: `/v1/${string}/${string}`;
  summary: string;
  input: I;
  output: O;
  /** Takes a body up to UNDERSTUDY_MAX_DEPLOY_BYTES instead of UNDERSTUDY_MAX_BODY_BYTES (uploads of code). */
  largeBody?: boolean;
  handler(ctx: RouteContext, input: z.output<I>): Promise<z.input<O>>;
}

export function defineRoute<I extends z.ZodType, O extends z.ZodType>(def: RouteDef<I, O>): RouteDef<I, O> {
  return def;
}
