import type { Clock } from "../clock";
import type { Config } from "../config";
import type { Logger } from "../log";
import { pruneSessions } from "../ui/sessions";
import type { Db } from "../store/database";
import { deleteOrphanRecordingTokens, deleteRecordingFramesBefore } from "../sessions/recording";
import * as store from "./store";

const DAY_MS = 24 * 60 * 60 * 1000;
/** Batches per table per run: a backlog is worked off over several runs, never in one long hold of the event loop. */
const MAX_BATCHES_PER_RUN = 200;

export interface PruneCounts {
  artifacts: number;
  logs: number;
  deliveries: number;
  /** Screenshots of remote sessions (src/sessions/recording.ts). */
  recordings: number;
}

/**
 * Deletes what is past its retention (README "Job artifacts"): artifacts by
 * age, then each tenant's oldest over its size cap; log lines of jobs that
 * ended long enough ago; finished webhook deliveries. In batches of
 * PRUNE_BATCH rows, each its own short statement, with a turn of the event
 * loop between them, so neither the write lock nor the loop is held long.
 */
export async function pruneOnce(db: Db, clock: Clock, config: Config["artifacts"]): Promise<PruneCounts> {
  const now = clock.now().getTime();
  const cutoff = (days: number) => new Date(now - days * DAY_MS).toISOString();
  const counts: PruneCounts = { artifacts: 0, logs: 0, deliveries: 0, recordings: 0 };
  const drain = async (deleteBatch: () => Promise<number>): Promise<number> => {
    let total = 0;
    for (let i = 0; i < MAX_BATCHES_PER_RUN; i++) {
      const deleted = await deleteBatch();
      total += deleted;
      if (deleted < store.PRUNE_BATCH) break;
      await new Promise((resolve) => setImmediate(resolve));
    }
    return total;
  };
  if (config.retentionDays > 0) counts.artifacts += await drain(() => store.deleteArtifactsBefore(db, cutoff(config.retentionDays)));
  // Session recordings go with the artifacts' age, and count toward no size cap.
  if (config.retentionDays > 0) {
    counts.recordings += await drain(() => deleteRecordingFramesBefore(db, cutoff(config.retentionDays), store.PRUNE_BATCH));
    await deleteOrphanRecordingTokens(db);
  }
  for (const tenantId of await store.tenantsOverCap(db, config.maxBytesPerTenant)) {
    counts.artifacts += await store.enforceTenantCap(db, tenantId, config.maxBytesPerTenant);
  }
  if (config.logRetentionDays > 0) counts.logs += await drain(() => store.deleteJobLogsBefore(db, cutoff(config.logRetentionDays)));
  if (config.deliveryRetentionDays > 0) counts.deliveries += await drain(() => store.deleteDeliveriesBefore(db, cutoff(config.deliveryRetentionDays)));
  await pruneSessions(db, new Date(now).toISOString());
  return counts;
}

/** Runs pruneOnce at start and every pruneIntervalMs, one run at a time; stop() waits for a run under way. */
export class Pruner {
  #timer: ReturnType<typeof setInterval> | undefined;
  #running: Promise<unknown> = Promise.resolve();
  #busy = false;
  #stopped = false;

  constructor(private readonly deps: { db: Db; clock: Clock; log: Logger; config: Pick<Config, "artifacts"> }) {}

  start(): void {
    this.#timer = setInterval(() => this.run(), this.deps.config.artifacts.pruneIntervalMs);
    this.#timer.unref?.();
    this.run();
  }

  /** One run now, unless one is under way. */
  run(): Promise<unknown> {
    if (this.#busy || this.#stopped) return this.#running;
    this.#busy = true;
    this.#running = pruneOnce(this.deps.db, this.deps.clock, this.deps.config.artifacts)
      .then((counts) => {
        if (counts.artifacts + counts.logs + counts.deliveries + counts.recordings > 0) this.deps.log.log("info", "pruned old rows", { ...counts });
      })
      .catch((error: unknown) => this.deps.log.log("error", "pruning failed", { error: error instanceof Error ? error.message : "error" }))
      .finally(() => {
        this.#busy = false;
      });
    return this.#running;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    await this.#running;
  }
}
