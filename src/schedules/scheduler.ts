import type { Clock, IdSource } from "../clock";
import type { Config } from "../config";
import type { RunnerHandle } from "../http/route";
import type { JobEndHook } from "../jobs/lifecycle";
import type { Logger } from "../log";
import type { Db } from "../store/database";
import type { Vault } from "../vault/vault";
import type { WorkflowRegistry } from "../workflows/registry";

export interface SchedulerDeps {
  db: Db;
  vault: Vault;
  clock: Clock;
  newId: IdSource;
  log: Logger;
  workflows: WorkflowRegistry;
  runner: RunnerHandle;
  config: Pick<Config, "schedules">;
}

/** Updates last_error / consecutive_failures of a job's schedule when it ends. TODO(schedules issue). */
export function scheduleJobEndHook(_deps: SchedulerDeps): JobEndHook {
  return async () => {};
}

/** Enqueues jobs of due schedules (never runs work itself). TODO(schedules issue). */
export class Scheduler {
  constructor(readonly deps: SchedulerDeps) {}
  start(): void {}
  async stop(): Promise<void> {}
}
