import { systemClock, randomId, type Clock, type IdSource } from "../clock";
import type { Config } from "../config";
import { flushAuditEvents } from "../audit/store";
import { createApp } from "../http/app";
import type { Logger } from "../log";
import { openDatabase, type Db } from "../store/database";
import { migrateToLatest } from "../store/migrate";
import type { JobEndHook } from "../jobs/lifecycle";
import { Runner } from "../runner/runner";
import { Vault, type Keyring } from "../vault/vault";
import { WorkflowRegistry } from "../workflows/registry";
import { listen, type Listening } from "./listen";

export interface OpenedStore {
  db: Db;
  vault: Vault;
}

/** Opens the database, brings its schema up to date and verifies the master key, in that order. */
export async function openStore(config: Config, dbPath: string, keyring: Keyring, clock: Clock = systemClock): Promise<OpenedStore> {
  const db = await openDatabase({ path: dbPath, synchronous: config.dbSynchronous, busyTimeoutMs: config.busyTimeoutMs });
  try {
    await migrateToLatest(db);
    const vault = await Vault.open(db, keyring, clock);
    return { db, vault };
  } catch (error) {
    await db.destroy();
    throw error;
  }
}

export interface RunningServer extends Listening {
  readonly db: Db;
  readonly vault: Vault;
  readonly runner: Runner;
  readonly workflows: WorkflowRegistry;
  /** Stops taking requests, lets running jobs finish (up to the shutdown deadline), then closes the database. */
  close(): Promise<void>;
}

export async function startServer(
  config: Config,
  store: OpenedStore,
  log: Logger,
  options: { workflowsDir: string; watchWorkflows?: boolean; workflows?: WorkflowRegistry; clock?: Clock; newId?: IdSource },
): Promise<RunningServer> {
  const clock = options.clock ?? systemClock;
  const workflows = options.workflows ?? (await WorkflowRegistry.load(options.workflowsDir, log));
  const jobEndHooks: JobEndHook[] = [];
  const runner = new Runner({ db: store.db, vault: store.vault, workflows, config, clock, log, jobEndHooks });
  await runner.recoverInterrupted();
  const app = createApp({
    db: store.db,
    vault: store.vault,
    config,
    clock,
    newId: options.newId ?? randomId,
    log,
    workflows,
    runner,
    jobEndHooks,
  });
  const listening = await listen(app, { ...config.listen, maxBodyBytes: config.maxBodyBytes });
  runner.start();
  const stopWatching = options.watchWorkflows ? workflows.watch() : () => {};
  return {
    ...listening,
    db: store.db,
    vault: store.vault,
    runner,
    workflows,
    async close() {
      stopWatching();
      await listening.stop();
      await runner.shutdown();
      await flushAuditEvents(store.db);
      await store.db.destroy();
    },
  };
}
