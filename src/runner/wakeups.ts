import type pg from "pg";
import { loadPg } from "../store/postgres";
import type { Logger } from "../log";

/** Channels of the runner's wake-ups on PostgreSQL (migration 0009 notifies the first on every job insert). */
export const JOBS_CHANNEL = "understudy_jobs";
export const CANCEL_CHANNEL = "understudy_job_cancel";

export interface WakeupHandlers {
  /** Jobs were queued in this schema (by any instance). */
  jobsQueued(): void;
  /** A cancel was requested for this job (by any instance); the payload is only its id. */
  cancelRequested(jobId: string): void;
}

/**
 * LISTENs for the runner on a connection of its own (a pooled one would be
 * handed to other queries; LISTEN belongs to its session). NOTIFY is a
 * shortcut, not the source of truth: polling still finds everything, so a
 * lost connection only costs latency until it is back (reconnects with a
 * growing backoff, and wakes the runner once reconnected, as a notification
 * may have been missed meanwhile).
 */
export class PgWakeups {
  #client: pg.Client | undefined;
  #stopped = false;
  #retryMs = 100;
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** The schema of this instance's tables: one database may hold several (the job trigger sends its schema). */
  #schema: string | undefined;

  constructor(
    private readonly url: string,
    private readonly handlers: WakeupHandlers,
    private readonly log: Logger,
  ) {}

  start(): void {
    void this.#connect();
  }

  async #connect(): Promise<void> {
    if (this.#stopped) return;
    const pg = await loadPg();
    if (this.#stopped) return;
    const client = new pg.Client({ connectionString: this.url, connectionTimeoutMillis: 10_000 });
    let failed = false;
    const retry = (why: string) => {
      if (failed) return;
      failed = true;
      client.removeAllListeners("notification");
      void client.end().catch(() => {});
      if (this.#client === client) this.#client = undefined;
      if (this.#stopped) return;
      this.log.log("warn", "the runner's PostgreSQL notification connection failed; polling until it is back", { error: why, retry_ms: this.#retryMs });
      this.#timer = setTimeout(() => void this.#connect(), this.#retryMs);
      this.#retryMs = Math.min(this.#retryMs * 2, 10_000);
    };
    client.on("error", (error) => retry(error.name));
    client.on("end", () => retry("connection ended"));
    client.on("notification", (message) => {
      if (message.channel === JOBS_CHANNEL) {
        if (message.payload === this.#schema) this.handlers.jobsQueued();
      } else if (message.channel === CANCEL_CHANNEL && message.payload) {
        this.handlers.cancelRequested(message.payload);
      }
    });
    try {
      await client.connect();
      this.#schema = (await client.query<{ schema: string }>("SELECT current_schema() AS schema")).rows[0]?.schema;
      // Named in pg_stat_activity, per schema (an operator, or a test, can find this connection).
      await client.query("SELECT set_config('application_name', $1, false)", [`understudy-runner-listen:${this.#schema ?? ""}`.slice(0, 63)]);
      await client.query(`LISTEN ${JOBS_CHANNEL}`);
      await client.query(`LISTEN ${CANCEL_CHANNEL}`);
    } catch (error) {
      // Only the error's class: a pg message may quote the connection's settings.
      retry(error instanceof Error ? ((error as { code?: string }).code ?? error.name) : "error");
      return;
    }
    if (this.#stopped) {
      void client.end().catch(() => {});
      return;
    }
    this.#client = client;
    this.#retryMs = 100;
    // Anything queued while no one listened.
    this.handlers.jobsQueued();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    const client = this.#client;
    this.#client = undefined;
    await client?.end().catch(() => {});
  }
}
