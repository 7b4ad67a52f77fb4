import type { Clock, IdSource } from "./clock";
import type { Config } from "./config";
import type { Deployments } from "./deployments/service";
import type { JobEndHook } from "./jobs/lifecycle";
import type { Logger } from "./log";
import type { SessionRecordings } from "./sessions/recording";
import type { BrowserSessions } from "./sessions/service";
import type { Db } from "./store/database";
import type { Vault } from "./vault/vault";
import type { WorkflowCatalog } from "./workflows/catalog";
import type { WorkflowRegistry } from "./workflows/registry";

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
  config: Pick<Config, "maxBodyBytes" | "maxValueBytes" | "rateLimit" | "requestLog" | "deployments">;
  /** The operator's workflow files. */
  workflows: WorkflowRegistry;
  /** Every workflow a tenant can run: its deployed ones first, then the operator's files. */
  catalog: WorkflowCatalog;
  deployments: Deployments;
  runner: RunnerHandle;
  /** Run inside the transaction that ends each job (webhooks, schedules). */
  jobEndHooks: readonly JobEndHook[];
  webhooks: WebhookHandle;
  /** Remote browser sessions (/v1/sessions/*). */
  sessions: BrowserSessions;
  /** Session recordings (screenshots); absent: recordings/get answers null. */
  recordings?: SessionRecordings;
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

