import { chmodSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { spedUpClock, systemClock, randomId, type Clock, type IdSource } from "../clock";
import type { Config } from "../config";
import { Pruner } from "../artifacts/retention";
import { flushAuditEvents } from "../audit/store";
import { upgradeCredentialSeals } from "../credentials/service";
import { createApp } from "../http/app";
import type { AppDeps } from "../http/route";
import type { Logger } from "../log";
import { damagedDatabaseError, openDatabase, type Db } from "../store/database";
import { migrateToLatest } from "../store/migrate";
import { openPostgres } from "../store/postgres";
import type { JobEndHook } from "../jobs/lifecycle";
import { InProcessExecutor, type JobExecutor } from "../runner/executor";
import { Runner } from "../runner/runner";
import { chooseSandbox } from "../runner/sandbox";
import { WorkerExecutor, workerStarter } from "../runner/worker-executor";
import { WorkerPool } from "../runner/worker-pool";
import { isBun, selfReadablePaths, staleServerDirs } from "../runtime";
import { removeStaleSessionBrowsers, type WrapCommand } from "../sessions/browser";
import { cdpGateway } from "../sessions/cdp-proxy";
import { sessionProfiles } from "../sessions/profiles";
import { SessionRecordings } from "../sessions/recording";
import { BrowserSessions } from "../sessions/service";
import { Scheduler, scheduleJobEndHook } from "../schedules/scheduler";
import { DeliveryWorker, webhookJobEndHook } from "../webhooks/worker";
import { Vault, type Keyring } from "../vault/vault";
import { WorkflowCatalog } from "../workflows/catalog";
import { WorkflowRegistry } from "../workflows/registry";
import { DEFAULT_ARCHIVE_LIMITS } from "../deployments/archive";
import { DeploymentUnavailableError, Deployments, tenantDeploymentsDir } from "../deployments/service";
import { listen, type Listening } from "./listen";
import { requireWritableTempDir } from "./temp-dir";

export interface OpenedStore {
  db: Db;
  vault: Vault;
  /** The database file (with PostgreSQL, where it would be); its directory is the data directory. */
  dbPath: string;
}

/** Opens the database, brings its schema up to date and verifies the master key, in that order. */
export async function openStore(config: Config, dbPath: string, keyring: Keyring, clock: Clock = systemClock): Promise<OpenedStore> {
  const db = config.databaseUrl
    ? await openPostgres({ url: config.databaseUrl, poolSize: config.dbPoolSize })
    : await openDatabase({ path: dbPath, synchronous: config.dbSynchronous, busyTimeoutMs: config.busyTimeoutMs });
  try {
    await migrateToLatest(db);
    const vault = await Vault.open(db, keyring, clock, { rememberOpenedMs: config.valueCacheMs });
    await upgradeCredentialSeals(db, vault);
    return { db, vault, dbPath };
  } catch (error) {
    await db.destroy();
    throw (config.databaseUrl ? undefined : damagedDatabaseError(dbPath, error)) ?? error;
  }
}

const WORKERS_ROOT_PREFIX = "understudy-workers-";

/**
 * Removes the worker directories of servers that are gone (a SIGKILL leaves
 * them behind): each is named after its server's pid.
 */
function removeStaleWorkerDirs(): void {
  for (const dir of staleServerDirs(WORKERS_ROOT_PREFIX)) rmSync(dir, { recursive: true, force: true });
}

/**
 * The job executor of the configured isolation: worker processes in the
 * sandbox this host offers (the default), or the server's own process.
 */
function createExecutor(
  config: Config,
  store: OpenedStore,
  workflows: WorkflowRegistry,
  deploymentsDir: string,
  log: Logger,
): { executor: JobExecutor; isolation: string; wrap: WrapCommand } {
  if (config.workers.isolation === "none") {
    log.log("warn", "workflow handlers run inside the server process (UNDERSTUDY_WORKFLOW_ISOLATION=none): only for a single trusted operator");
    return { executor: new InProcessExecutor(), isolation: "in the server process (UNDERSTUDY_WORKFLOW_ISOLATION=none)", wrap: (command) => [...command] };
  }
  removeStaleWorkerDirs();
  const workersRoot = mkdtempSync(join(tmpdir(), `${WORKERS_ROOT_PREFIX}${process.pid}-`));
  chmodSync(workersRoot, 0o700);
  const dataDir = dirname(resolve(store.dbPath));
  const sandbox = chooseSandbox(config.workers.sandbox, {
    // The database files too, by name: the data directory may be the workflows directory itself.
    hidden: [dataDir, ...["", "-wal", "-shm", "-journal"].map((s) => `${resolve(store.dbPath)}${s}`), deploymentsDir, workersRoot, ...config.keyFiles.map((f) => resolve(f))],
    // Only the program: the workflows directory is bound for `files` workers
    // alone (readOnlyPaths), so tenants' deployed code never sees it.
    programPaths: selfReadablePaths(),
  });
  if (sandbox.mode === "bwrap") log.log("info", "workflow handlers run in worker processes, sandboxed with bubblewrap");
  else log.log("warn", "workflow handlers run in worker processes without a sandbox: tenant code can read the files this server's user can", { reason: sandbox.reason });
  const pool = new WorkerPool({
    start: workerStarter({
      sandbox,
      workersRoot,
      // A deployments worker sees its own tenant's uploads, no one else's.
      readOnlyPaths: (tenantId, kind) =>
        kind === "files" ? (workflows.dir ? [resolve(workflows.dir)] : []) : [tenantDeploymentsDir(deploymentsDir, tenantId)],
      log,
    }),
    limits: config.workers,
    log,
    generation: () => workflows.generation,
  });
  const executor = new WorkerExecutor(pool);
  return {
    // A remote session's browser is driven by its tenant: it gets the workers' sandbox.
    wrap: (command, paths) => sandbox.wrap(command, paths),
    executor: {
      execute: (run) => executor.execute(run),
      discover: (...args) => executor.discover(...args),
      async shutdown() {
        await executor.shutdown();
        rmSync(workersRoot, { recursive: true, force: true });
      },
    },
    isolation:
      sandbox.mode === "bwrap"
        ? "worker processes, sandboxed with bubblewrap"
        : `worker processes, no sandbox (${sandbox.reason})`,
  };
}

export interface RunningServer extends Listening {
  readonly deps: AppDeps;
  readonly db: Db;
  readonly vault: Vault;
  readonly runner: Runner;
  /** Deletes old artifacts, job logs and webhook deliveries (README "Job artifacts"). */
  readonly pruner: Pruner;
  readonly workflows: WorkflowRegistry;
  /** How handlers run, in a few words, for the dev banner. */
  readonly isolation: string;
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
    /** Don't start the scheduler's timer (tests that tick a scheduler of their own). */
    schedulerPaused?: boolean;
  },
): Promise<RunningServer> {
  requireWritableTempDir();
  const clock = options.clock ?? systemClock;
  const workflows = options.workflows ?? (await WorkflowRegistry.load(options.workflowsDir, log));
  const newId = options.newId ?? randomId;
  const jobEndHooks: JobEndHook[] = [];
  const deploymentsDir = resolve(config.deployments.dir ?? join(dirname(resolve(store.dbPath)), "deployments"));
  mkdirSync(deploymentsDir, { recursive: true, mode: 0o700 });
  const { executor, isolation, wrap } = createExecutor(config, store, workflows, deploymentsDir, log);
  const catalog = new WorkflowCatalog(workflows, deploymentsDir);
  const deployments = new Deployments({
    db: store.db,
    clock,
    newId,
    log,
    dir: deploymentsDir,
    limits: { maxUploadBytes: config.deployments.maxUploadBytes, maxUnpackedBytes: config.deployments.maxUnpackedBytes, maxEntries: DEFAULT_ARCHIVE_LIMITS.maxEntries },
    buildLeaseMs: config.deployments.buildLeaseMs,
    discover: (tenantId, dir, entry, timeoutMs) => executor.discover(tenantId, dir, entry, timeoutMs),
  });
  const runner = new Runner({
    db: store.db,
    vault: store.vault,
    resolveWorkflow: (db, row) => catalog.forJob(db, row, config.workers.isolation),
    materialiseDeployment: async (tenantId, deploymentId) => {
      try {
        await deployments.materialise(tenantId, deploymentId);
        return undefined;
      } catch (error) {
        if (error instanceof DeploymentUnavailableError) return error.message;
        throw error;
      }
    },
    executor,
    config,
    clock,
    log,
    jobEndHooks,
    newId,
  });
  const pruner = new Pruner({ db: store.db, clock, log, config });
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
  const schedulerClock = config.schedules.testOnlyClock ? spedUpClock(config.schedules.testOnlyClock.originMs, config.schedules.testOnlyClock.speed) : clock;
  const scheduler = new Scheduler({ db: store.db, vault: store.vault, clock: schedulerClock, newId, log, catalog, runner, config });
  jobEndHooks.push(webhookJobEndHook(webhookDeps, () => deliveries.wake()), scheduleJobEndHook(scheduler.deps));
  await runner.recoverInterrupted();
  removeStaleSessionBrowsers();
  const recordings = new SessionRecordings({ db: store.db, clock, newId, log, retentionDays: () => config.artifacts.retentionDays });
  const sessions = new BrowserSessions({
    limits: config.sessions,
    recordings,
    recordingIntervalMs: config.sessions.recordingIntervalMs,
    profiles: sessionProfiles({ db: store.db, vault: store.vault, clock, newId, log, maxBodyBytes: config.maxBodyBytes }),
    chromiumPath: config.chromiumPath,
    wrap,
    websockets: isBun,
    clock,
    newId,
    log,
  });
  const deps: AppDeps = {
    db: store.db,
    vault: store.vault,
    config,
    clock,
    newId,
    log,
    workflows,
    catalog,
    deployments,
    runner,
    jobEndHooks,
    webhooks: { allowPrivate: webhookDeps.allowPrivate, wake: () => deliveries.wake() },
    sessions,
    recordings,
    nowMs: options.nowMs,
  };
  const app = createApp(deps);
  const listening = await listen(app, { ...config.listen, log, sockets: cdpGateway(sessions) });
  if (!options.runnerPaused) runner.start();
  await deployments.resumeInterrupted();
  deliveries.start();
  if (!options.schedulerPaused) scheduler.start();
  pruner.start();
  const stopWatching = options.watchWorkflows ? workflows.watch() : () => {};
  return {
    ...listening,
    deps,
    db: store.db,
    vault: store.vault,
    runner,
    pruner,
    workflows,
    isolation,
    async close() {
      stopWatching();
      // Every remote session ends first: its browser, then its client's socket.
      await sessions.closeAll();
      await listening.stop();
      await scheduler.stop();
      await pruner.stop();
      deployments.stop();
      await runner.shutdown();
      await deliveries.stop();
      await flushAuditEvents(store.db);
      await store.db.destroy();
    },
  };
}
