import { systemClock, randomId, type Clock, type IdSource } from "../clock";
import type { Config } from "../config";
import { flushAuditEvents } from "../audit/store";
import { createApp } from "../http/app";
import type { AppDeps } from "../http/route";
import type { Logger } from "../log";
import { openDatabase, type Db } from "../store/database";
import { migrateToLatest } from "../store/migrate";
import type { JobEndHook } from "../jobs/lifecycle";
import { Runner } from "../runner/runner";
import { Scheduler, scheduleJobEndHook } from "../schedules/scheduler";
import { DeliveryWorker, webhookJobEndHook } from "../webhooks/worker";
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
  readonly deps: AppDeps;
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
  options: {
    workflowsDir: string;
    watchWorkflows?: boolean;
    workflows?: WorkflowRegistry;
    clock?: Clock;
    newId?: IdSource;
    /** Webhook targets on loopback and private addresses, when the config does not say (dev: allowed). */
    allowPrivateWebhooksByDefault?: boolean;
    /** Tests: the rate limiter's clock. */
    nowMs?: () => number;
    /** Tests: leave the runner stopped, so jobs stay queued. */
    runnerPaused?: boolean;
  },
): Promise<RunningServer> {
  const clock = options.clock ?? systemClock;
  const workflows = options.workflows ?? (await WorkflowRegistry.load(options.workflowsDir, log));
  const newId = options.newId ?? randomId;
  const jobEndHooks: JobEndHook[] = [];
  const runner = new Runner({ db: store.db, vault: store.vault, workflows, config, clock, log, jobEndHooks });
  const webhookDeps = {
    db: store.db,
    vault: store.vault,
    clock,
    newId,
    log,
    config,
    allowPrivate: config.webhooks.allowPrivate ?? options.allowPrivateWebhooksByDefault ?? false,
  };
  const deliveries = new DeliveryWorker(webhookDeps);
  const scheduler = new Scheduler({ db: store.db, vault: store.vault, clock, newId, log, workflows, runner, config });
  jobEndHooks.push(webhookJobEndHook(webhookDeps, () => deliveries.wake()), scheduleJobEndHook(scheduler.deps));
  await runner.recoverInterrupted();
  const deps: AppDeps = {
    db: store.db,
    vault: store.vault,
    config,
    clock,
    newId,
    log,
    workflows,
    runner,
    jobEndHooks,
    webhooks: { allowPrivate: webhookDeps.allowPrivate, wake: () => deliveries.wake() },
    nowMs: options.nowMs,
  };
  const app = createApp(deps);
  const listening = await listen(app, { ...config.listen, maxBodyBytes: config.maxBodyBytes });
  if (!options.runnerPaused) runner.start();
  deliveries.start();
  scheduler.start();
  const stopWatching = options.watchWorkflows ? workflows.watch() : () => {};
  return {
    ...listening,
    deps,
    db: store.db,
    vault: store.vault,
    runner,
    workflows,
    async close() {
      stopWatching();
      await listening.stop();
      await scheduler.stop();
      await runner.shutdown();
      await deliveries.stop();
      await flushAuditEvents(store.db);
      await store.db.destroy();
    },
  };
}
