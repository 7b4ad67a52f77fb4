import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { systemClock, randomId, type Clock, type IdSource } from "../clock";
import type { Config } from "../config";
import { flushAuditEvents } from "../audit/store";
import { createApp } from "../http/app";
import type { AppDeps } from "../http/route";
import type { Logger } from "../log";
import { openDatabase, type Db } from "../store/database";
import { migrateToLatest } from "../store/migrate";
import type { JobEndHook } from "../jobs/lifecycle";
import { InProcessExecutor, type JobExecutor } from "../runner/executor";
import { Runner, type JobWorkflowResolver } from "../runner/runner";
import { chooseSandbox } from "../runner/sandbox";
import { WorkerExecutor, workerStarter } from "../runner/worker-executor";
import { WorkerPool } from "../runner/worker-pool";
import { selfReadablePaths } from "../runtime";
import { Scheduler, scheduleJobEndHook } from "../schedules/scheduler";
import { DeliveryWorker, webhookJobEndHook } from "../webhooks/worker";
import { Vault, type Keyring } from "../vault/vault";
import { WorkflowRegistry } from "../workflows/registry";
import { listen, type Listening } from "./listen";

export interface OpenedStore {
  db: Db;
  vault: Vault;
  /** The database file; its directory is the data directory. */
  dbPath: string;
}

/** Opens the database, brings its schema up to date and verifies the master key, in that order. */
export async function openStore(config: Config, dbPath: string, keyring: Keyring, clock: Clock = systemClock): Promise<OpenedStore> {
  const db = await openDatabase({ path: dbPath, synchronous: config.dbSynchronous, busyTimeoutMs: config.busyTimeoutMs });
  try {
    await migrateToLatest(db);
    const vault = await Vault.open(db, keyring, clock);
    return { db, vault, dbPath };
  } catch (error) {
    await db.destroy();
    throw error;
  }
}

/**
 * The job executor of the configured isolation: worker processes in the
 * sandbox this host offers (the default), or the server's own process.
 */
function createExecutor(config: Config, store: OpenedStore, workflows: WorkflowRegistry, log: Logger): JobExecutor {
  if (config.workers.isolation === "none") {
    log.log("warn", "workflow handlers run inside the server process (UNDERSTUDY_WORKFLOW_ISOLATION=none): only for a single trusted operator");
    return new InProcessExecutor();
  }
  const workersRoot = mkdtempSync(join(tmpdir(), "understudy-workers-"));
  chmodSync(workersRoot, 0o700);
  const dataDir = dirname(resolve(store.dbPath));
  const sandbox = chooseSandbox(config.workers.sandbox, {
    hidden: [dataDir, workersRoot, ...config.keyFiles.map((f) => resolve(f))],
    programPaths: [...selfReadablePaths(), ...(workflows.dir ? [resolve(workflows.dir)] : [])],
  });
  if (sandbox.mode === "bwrap") log.log("info", "workflow handlers run in worker processes, sandboxed with bubblewrap");
  else log.log("warn", "workflow handlers run in worker processes without a sandbox: tenant code can read the files this server's user can", { reason: sandbox.reason });
  const pool = new WorkerPool({
    start: workerStarter({
      sandbox,
      workersRoot,
      readOnlyPaths: (_tenantId, kind) => (kind === "files" && workflows.dir ? [resolve(workflows.dir)] : []),
      log,
    }),
    limits: config.workers,
    log,
    generation: () => workflows.generation,
  });
  const executor = new WorkerExecutor(pool);
  return {
    execute: (run) => executor.execute(run),
    async shutdown() {
      await executor.shutdown();
      rmSync(workersRoot, { recursive: true, force: true });
    },
  };
}

/** Jobs of the operator's workflow files, found by name (a reload replaces a file's code for every job not yet started). */
function fileWorkflowResolver(workflows: WorkflowRegistry, isolation: "process" | "none"): JobWorkflowResolver {
  return async (_db, row) => {
    const registered = workflows.get(row.workflow);
    if (!registered?.definition) {
      return {
        error: registered
          ? `Workflow "${row.workflow}" failed to load: ${registered.error}`
          : `Workflow "${row.workflow}" is no longer loaded on this server.`,
      };
    }
    if (!registered.path && isolation === "process") {
      return { error: `Workflow "${row.workflow}" was handed to the server as code, not as a file, so it can run only in the server process (UNDERSTUDY_WORKFLOW_ISOLATION=none).` };
    }
    const { definition } = registered;
    return {
      kind: "file",
      name: definition.name,
      credentials: definition.credentials,
      startUrl: definition.startUrl,
      viewport: definition.viewport,
      path: registered.path ?? "",
      definition,
    };
  };
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
  const executor = createExecutor(config, store, workflows, log);
  const runner = new Runner({
    db: store.db,
    vault: store.vault,
    resolveWorkflow: fileWorkflowResolver(workflows, config.workers.isolation),
    executor,
    config,
    clock,
    log,
    jobEndHooks,
  });
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
