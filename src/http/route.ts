import type { z } from "zod";
import type { Clock, IdSource } from "../clock";
import type { Config } from "../config";
import type { Logger } from "../log";
import type { Db } from "../store/database";
import type { JobEndHook } from "../jobs/lifecycle";
import type { Vault } from "../vault/vault";
import type { WorkflowRegistry } from "../workflows/registry";

/** What the API needs of the webhook delivery worker. */
export interface WebhookHandle {
  /** Whether loopback and private addresses may be webhook targets (UNDERSTUDY_WEBHOOK_ALLOW_PRIVATE; dev: yes). */
  readonly allowPrivate: boolean;
  /** Deliveries are due (e.g. a redeliver): send them now. */
  wake(): void;
}

/** What the API needs of the job runner. */
export interface RunnerHandle {
  /** A job was queued: claim it if a slot is free. */
  wake(): void;
  /** Fires the abort signal of a running job; false when it is not running here. */
  cancel(jobId: string): boolean;
}

/** What the app is built from; made once by the composition root and handed in. */
export interface AppDeps {
  db: Db;
  vault: Vault;
  config: Pick<Config, "maxBodyBytes" | "maxValueBytes" | "rateLimit" | "requestLog">;
  workflows: WorkflowRegistry;
  runner: RunnerHandle;
  /** Run inside the transaction that ends each job (webhooks, schedules). */
  jobEndHooks: readonly JobEndHook[];
  webhooks: WebhookHandle;
  clock: Clock;
  newId: IdSource;
  log: Logger;
  /** Monotonic milliseconds, for the rate limiter; injected so tests control it. */
  nowMs?: () => number;
}

/** Who is calling: resolved from the API key before any handler runs. */
export interface Caller {
  tenantId: string;
  apiKeyId: string;
}

export interface RouteContext {
  deps: AppDeps;
  caller: Caller;
  requestId: string;
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
  handler(ctx: RouteContext, input: z.output<I>): Promise<z.input<O>>;
}

export function defineRoute<I extends z.ZodType, O extends z.ZodType>(def: RouteDef<I, O>): RouteDef<I, O> {
  return def;
}
