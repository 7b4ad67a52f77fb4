import { enforceTenantCap, insertArtifacts, type ArtifactRow } from "../artifacts/store";
import { recordAuditEventSoon } from "../audit/store";
import { randomId, type Clock } from "../clock";
import type { Config } from "../config";
import { openStoredValue } from "../credentials/service";
import { openProfileForJob, ProfileUnusableError, referenceProfile, saveRefreshedState } from "../profiles/service";
import { stateSecrets, type StorageState } from "../profiles/state";
import { finishJob, finishJobs, type JobEndHook } from "../jobs/lifecycle";
import { Batcher } from "../store/batcher";
import * as jobs from "../jobs/store";
import type { Logger } from "../log";
import type { Db } from "../store/database";
import { lockTenants } from "../store/locks";
import { isPostgres } from "../store/postgres";
import { VaultUnavailableError, type Vault } from "../vault/vault";
import type { ExecuteOutcome, LogLevel, StopReason } from "./execute";
import type { JobExecutor, RunnableWorkflow } from "./executor";
import type { Secret } from "./redactor";
import { PgWakeups } from "./wakeups";

/** The workflow a job row runs, or why it cannot run (a sentence for the job's error). */
export type JobWorkflowResolver = (db: Db, row: jobs.JobRow) => Promise<RunnableWorkflow | { error: string }>;

export interface RunnerDeps {
  /** Run inside the transaction that ends each job (webhooks, schedules). */
  jobEndHooks?: readonly JobEndHook[];
  db: Db;
  vault: Vault;
  /** Finds the code of a job (a workflow file, or the deployment the job was created with). */
  resolveWorkflow: JobWorkflowResolver;
  /**
   * Makes a deployed workflow's code present on this instance (unpacked from
   * the database on first use), outside the claim's transaction; resolves to
   * why it cannot be, for the job's error, or undefined.
   */
  materialiseDeployment?(tenantId: string, deploymentId: string): Promise<string | undefined>;
  /** Runs handlers: in worker processes, or in this process (UNDERSTUDY_WORKFLOW_ISOLATION=none). */
  executor: JobExecutor;
  config: Pick<Config, "jobs" | "chromiumPath" | "maxBodyBytes"> & Partial<Pick<Config, "artifacts" | "databaseUrl">>;
  newId?: () => string;
  clock: Clock;
  log: Logger;
}

/** The options a job row keeps as JSON (see jobs/service.ts). */
export interface JobOptions {
  headless?: boolean;
  start_url?: string;
  viewport?: { width: number; height: number };
  /** Names the caller gave in params.credentials: those stored credentials are not needed. */
  caller_credential_names?: string[];
  /** Keep a Playwright trace of the job's browser (jobs/create `trace`). */
  trace?: boolean;
}

export const jobParamsCredentialsContext = (jobId: string) => `job/${jobId}/params-credentials`;

interface RunningJob {
  tenantId: string;
  abort: AbortController;
  done: Promise<void>;
}

/**
 * The in-process job runner: a small loop that claims queued jobs, runs each
 * with its declared credentials, and ends it.
 *
 * Invariant: a job this runner claimed (status running) is always ended by it
 * (completed, failed or cancelled) in a transaction that also releases the
 * job's credential references; only a crash breaks that, and
 * recoverInterrupted() ends such jobs at the next start.
 *
 * On PostgreSQL several instances share the queue: claims skip rows another
 * instance is claiming (SKIP LOCKED); each claimed job is leased to this
 * instance, which renews its leases every lease/3; a job whose lease lapsed
 * (its instance died) is ended interrupted by whichever instance sees it
 * first, with no wait for a restart. Wake-ups and cancels come by
 * LISTEN/NOTIFY (wakeups.ts), with polling and the lease renewal as the
 * fallbacks.
 */
export class Runner {
  readonly #deps: RunnerDeps;
  readonly #running = new Map<string, RunningJob>();
  #ticking = false;
  #again = false;
  /** Nothing is claimed before start(): the server recovers interrupted jobs first, and a paused runner stays paused. */
  #started = false;
  #stopping = false;
  #poll: ReturnType<typeof setInterval> | undefined;
  /** When each tenant last had a job claimed (a claim counter): equal turns go to the tenant served least recently. */
  readonly #lastServed = new Map<string, number>();
  #claimCount = 0;
  /** The most jobs ever running at once: tests check the limit with it. */
  maxObservedConcurrency = 0;
  /** Called when a job's handler starts (for start-delay benchmarks). */
  onHandlerStart: ((jobId: string) => void) | undefined;
  /** This process's name on its jobs' leases: new at every start, so a restarted instance never renews its dead predecessor's jobs. */
  readonly instanceId: string;
  readonly #postgres: boolean;
  #leaseTimer: ReturnType<typeof setInterval> | undefined;
  #leaseWork: Promise<void> = Promise.resolve();
  #wakeups: PgWakeups | undefined;

  /**
   * Job ends, group-committed: the ends that come while a batch is being
   * written go together in the next transaction (their artifacts, their
   * rows, the release of their references, the end hooks).
   */
  readonly #ends = new Batcher<{ id: string; artifacts: ArtifactRow[]; end: jobs.JobEnd }, boolean>(async (ends) =>
    this.#deps.db.transaction().execute(async (trx) => {
      await insertArtifacts(trx, ends.flatMap((e) => e.artifacts));
      return finishJobs(trx, this.#deps.jobEndHooks ?? [], ends, ["running", "starting_browser"]);
    }),
  );

  constructor(deps: RunnerDeps) {
    this.#deps = deps;
    this.instanceId = (deps.newId ?? randomId)();
    this.#postgres = isPostgres(deps.db);
  }

  #lease(): jobs.Lease {
    return { owner: this.instanceId, expiresAt: new Date(this.#deps.clock.now().getTime() + this.#deps.config.jobs.leaseMs).toISOString() };
  }

  get runningCount(): number {
    return this.#running.size;
  }

  /**
   * Ends every job a previous process left running: browser automation is not
   * idempotent, so such a job fails as interrupted instead of being retried.
   */
  async recoverInterrupted(): Promise<number> {
    const { db, clock } = this.#deps;
    return db.transaction().execute(async (trx) => {
      const at = clock.now().toISOString();
      // SQLite: this process is the only one, so every running job is an
      // orphan. PostgreSQL: other live instances run theirs; only jobs whose
      // lease lapsed are.
      const ids = this.#postgres ? (await jobs.lapsedJobIds(trx, at)).filter((id) => !this.#running.has(id)) : await jobs.orphanedJobIds(trx);
      for (const id of ids) {
        await finishJob(trx, this.#deps.jobEndHooks ?? [], id, ["running", "starting_browser"], {
          status: "failed",
          failure_class: "interrupted",
          result: null,
          error: "The server stopped while this job was running. It was not retried: browser automation is not idempotent.",
          mapped_stack: null,
          completed_at: at,
        });
      }
      if (ids.length > 0) this.#deps.log.log("warn", "ended jobs interrupted by a previous stop", { count: ids.length });
      return ids.length;
    });
  }

  start(): void {
    this.#started = true;
    this.#poll = setInterval(() => this.wake(), this.#deps.config.jobs.pollMs);
    if (this.#postgres) {
      const { leaseMs } = this.#deps.config.jobs;
      // The name on this instance's leases (jobs.lease_owner), to tell which instance ran what.
      this.#deps.log.log("info", "job runner started", { instance_id: this.instanceId, lease_ms: leaseMs });
      this.#leaseTimer = setInterval(() => {
        // One round at a time: a slow database must not pile them up.
        this.#leaseWork = this.#leaseWork.then(() => this.#leaseRound());
      }, Math.max(1, Math.floor(leaseMs / 3)));
      if (this.#deps.config.databaseUrl) {
        this.#wakeups = new PgWakeups(this.#deps.config.databaseUrl, { jobsQueued: () => this.wake(), cancelRequested: (id) => this.cancel(id) }, this.#deps.log);
        this.#wakeups.start();
      }
    }
    this.wake();
  }

  /**
   * Renews this instance's leases (acting on cancel requests sent through
   * other instances), then ends the jobs of instances whose leases lapsed.
   */
  async #leaseRound(): Promise<void> {
    const { db, log } = this.#deps;
    try {
      if (this.#running.size > 0) {
        const mine = await jobs.renewLeases(db, this.instanceId, this.#lease().expiresAt);
        for (const row of mine) if (row.cancel_requested_at) this.cancel(row.id);
      }
      if (!this.#stopping) await this.recoverInterrupted();
    } catch (error) {
      log.log("error", "job lease renewal failed", { error: error instanceof Error ? error.message : String(error) });
    }
  }

  /** Something may be queued: claim what the free slots allow. */
  wake(): void {
    if (this.#stopping || !this.#started) return;
    if (this.#ticking) {
      this.#again = true;
      return;
    }
    this.#ticking = true;
    void this.#tick().finally(() => {
      this.#ticking = false;
    });
  }

  /** Fires the abort signal of a job running here; false if it is not running here. */
  cancel(jobId: string): boolean {
    const job = this.#running.get(jobId);
    if (!job) return false;
    job.abort.abort("cancelled" satisfies StopReason);
    return true;
  }

  /**
   * Stops claiming and ends every running job within the shutdown grace, one
   * budget: jobs may finish until the interrupt grace before its end, are then
   * told to stop, and those that ignore it are killed at its end (so a
   * `docker stop` of 10 s covers an 8 s shutdown grace, job grace included).
   */
  async shutdown(): Promise<void> {
    this.#stopping = true;
    clearInterval(this.#poll);
    try {
      await this.#finishRunning();
    } finally {
      // Leases are renewed (and cancels heard) until the last job here ended.
      clearInterval(this.#leaseTimer);
      await this.#leaseWork;
      await this.#wakeups?.stop();
    }
    await this.#deps.executor.shutdown();
  }

  async #finishRunning(): Promise<void> {
    const all = () => Promise.all([...this.#running.values()].map((j) => j.done));
    const { shutdownGraceMs, interruptGraceMs } = this.#deps.config.jobs;
    const deadline = shutdownGraceMs - interruptGraceMs;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = await Promise.race([
      all().then(() => false),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), deadline))),
    ]);
    clearTimeout(timer);
    if (timedOut) {
      for (const job of this.#running.values()) job.abort.abort("interrupted" satisfies StopReason);
      await all();
    }
  }

  async #tick(): Promise<void> {
    try {
      do {
        // bun:sqlite is synchronous, so claim -> run -> end -> claim is a chain
        // of microtasks that would never let the event loop serve a request:
        // with a backlog, /healthz and jobs/cancel waited for the whole queue
        // (measured: 6.9 s for 3,000 queued jobs). One macrotask turn per claim.
        await new Promise((resolve) => setImmediate(resolve));
        this.#again = false;
        const free = this.#deps.config.jobs.concurrency - this.#running.size;
        if (free <= 0 || this.#stopping) return;
        const claimed = await this.#claim(free);
        // All slots filled, or some chosen jobs went to another instance:
        // there may be more queued, so look again at once.
        if (claimed.rows.length === free || claimed.lost) this.#again = true;
      } while (this.#again && !this.#stopping);
    } catch (error) {
      this.#deps.log.log("error", "job claim failed", { error: error instanceof Error ? error.message : String(error) });
    }
  }

  /**
   * Claims up to `free` queued jobs in one transaction, fairly: each tenant's
   * queue is ranked, and a job's turn is its rank plus the jobs its tenant
   * already has running, so one tenant's thousand queued jobs do not starve
   * another's one.
   */
  async #claim(free: number): Promise<{ rows: jobs.JobRow[]; lost: boolean }> {
    const { db, clock } = this.#deps;
    const workflows = new Map<string, RunnableWorkflow | { error: string }>();
    // A job runs only once its claim committed: on PostgreSQL the end of a
    // job that raced ahead would not see its row running (READ COMMITTED)
    // and the job would stay `running` for ever.
    let settle!: (committed: boolean) => void;
    const committed = new Promise<boolean>((resolve) => (settle = resolve));
    const claimed = await db.transaction().execute(async (trx) => {
      const candidates = await jobs.queuedCandidates(trx, free);
      if (candidates.length === 0) return { rows: [], lost: false };
      // On PostgreSQL the running jobs of every instance count (the
      // candidates carry them, from the table); on SQLite this runner is the
      // only one.
      const runningHere = this.#localRunningByTenant();
      const turn = (c: jobs.Candidate) => c.rank + (c.running ?? runningHere.get(c.tenant_id) ?? 0);
      // Without the tie-break on last service, a slot freed by alpha's job
      // (alpha then has nothing running) would go to alpha's next, older job
      // every time, and beta would wait for alpha's whole queue.
      const served = (c: { tenant_id: string }) => this.#lastServed.get(c.tenant_id) ?? 0;
      const chosen = candidates.sort((a, b) => turn(a) - turn(b) || served(a) - served(b) || a.seq - b.seq).slice(0, free);
      const at = clock.now().toISOString();
      const rows = await jobs.markRunning(
        trx,
        chosen.map((c) => c.id),
        at,
        this.#lease(),
      );
      for (const c of chosen) if (rows.some((r) => r.id === c.id)) this.#lastServed.set(c.tenant_id, ++this.#claimCount);
      // Each job's code is resolved once, here, and handed to its run.
      for (const row of rows) workflows.set(row.id, await this.#deps.resolveWorkflow(trx, row));
      // The references are taken under the tenants' locks, which a
      // credential's (or profile's) delete takes too: either the delete
      // committed first (the credential is not referenced, nor injected) or
      // it waits for this claim and then sees the reference (a 409). Jobs
      // that hold no reference take no lock (one round trip less per tenant).
      const holdsReferences = (row: jobs.JobRow) => {
        const workflow = workflows.get(row.id)!;
        return !("error" in workflow) && (workflow.credentials.length > 0 || workflow.authProfile !== undefined);
      };
      await lockTenants(trx, rows.filter(holdsReferences).map((r) => r.tenant_id));
      // A credential stored after the job was queued is used too: its
      // reference is taken here, in the claim, before any value is read. One
      // lookup per tenant and set of names, one insert for every reference.
      const references: jobs.NewReference[] = [];
      const stored = new Map<string, { id: string }[]>();
      for (const row of rows) {
        const workflow = workflows.get(row.id)!;
        const options = JSON.parse(row.options) as JobOptions;
        const wanted = ("error" in workflow ? [] : workflow.credentials).filter((name) => !options.caller_credential_names?.includes(name));
        if (wanted.length > 0) {
          const key = [row.tenant_id, ...wanted].join("\u0000");
          let found = stored.get(key);
          if (!found) stored.set(key, (found = await jobs.findCredentialIdsByName(trx, row.tenant_id, wanted)));
          for (const c of found) references.push({ job_id: row.id, credential_id: c.id, tenant_id: row.tenant_id, created_at: at });
        }
        // Its browser profile cannot be deleted (or swapped) while it runs.
        if (!("error" in workflow) && workflow.authProfile) await referenceProfile(trx, row.tenant_id, row.id, workflow.authProfile.name, at);
      }
      await jobs.insertReferenceRows(trx, references);
      // Registered before the claim commits, so a cancel that waits on this
      // transaction always finds the job's abort controller.
      // (A shutdown meanwhile waits for `done`, which covers the run.)
      for (const row of rows) {
        const abort = new AbortController();
        const done = committed.then((ok) => (ok ? this.#run(row, workflows.get(row.id)!, abort) : undefined));
        this.#running.set(row.id, { tenantId: row.tenant_id, abort, done });
        this.maxObservedConcurrency = Math.max(this.maxObservedConcurrency, this.#running.size);
      }
      return { rows, lost: rows.length < chosen.length };
    }).catch((error: unknown) => {
      // Rolled back: those jobs are still queued, not ours.
      for (const id of workflows.keys()) this.#running.delete(id);
      settle(false);
      throw error;
    });
    settle(true);
    return claimed;
  }

  #localRunningByTenant(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const job of this.#running.values()) counts.set(job.tenantId, (counts.get(job.tenantId) ?? 0) + 1);
    return counts;
  }

  async #run(row: jobs.JobRow, workflow: RunnableWorkflow | { error: string }, abort: AbortController): Promise<void> {
    const { db, clock, log } = this.#deps;
    const logs = new JobLogWriter(db, row, clock);
    let outcome: ExecuteOutcome;
    const profile: { used?: { id: string } } = {};
    try {
      outcome = await this.#execute(row, workflow, abort, logs, profile);
      if (outcome.status === "completed" && !("error" in workflow) && workflow.authProfile?.refresh && profile.used) {
        await this.#refreshProfile(row, workflow.authProfile.name, profile.used.id, outcome.storageState, logs);
      }
    } catch (error) {
      // Our own failure (e.g. a value failed its integrity check): the job
      // fails with a message that quotes nothing of the data.
      if (error instanceof VaultUnavailableError) {
        // Its message names what the operator must fix, and no secret.
        log.log("error", error.message, { job_id: row.id, problem: error.problem });
      } else {
        log.log("error", "job failed inside the runner", { job_id: row.id, error: error instanceof Error ? error.name : "error" });
      }
      outcome = {
        status: "failed",
        failureClass: "error",
        error:
          error instanceof RunnerError
            ? error.message
            : error instanceof VaultUnavailableError
              ? error.clientMessage
              : "The runner could not start this job; the server log has the detail.",
        mappedStack: null,
      };
    }
    const artifacts = this.#artifactRows(row, outcome, logs);
    try {
      await logs.close();
      await this.#ends.submit({
        id: row.id,
        artifacts,
        end: {
          status: outcome.status,
          failure_class: outcome.status === "completed" ? null : outcome.failureClass,
          result: outcome.status === "completed" ? JSON.stringify(outcome.result) : null,
          error: outcome.status === "completed" ? null : outcome.error,
          mapped_stack: outcome.status === "completed" ? null : outcome.mappedStack,
          completed_at: clock.now().toISOString(),
        },
      });
      const cap = this.#deps.config.artifacts?.maxBytesPerTenant ?? 0;
      if (artifacts.length > 0 && cap > 0) await enforceTenantCap(db, row.tenant_id, cap);
    } catch (error) {
      log.log("error", "could not record the end of a job", { job_id: row.id, error: error instanceof Error ? error.message : "error" });
    } finally {
      this.#running.delete(row.id);
      this.wake();
    }
  }

  async #execute(
    row: jobs.JobRow,
    resolved: RunnableWorkflow | { error: string },
    abort: AbortController,
    logs: JobLogWriter,
    profile: { used?: { id: string } },
  ): Promise<ExecuteOutcome> {
    const { db, vault, config, clock } = this.#deps;
    if ("error" in resolved) throw new RunnerError(resolved.error);
    const workflow = resolved;
    if (workflow.kind === "deployment" && this.#deps.materialiseDeployment) {
      const unavailable = await this.#deps.materialiseDeployment(row.tenant_id, workflow.deploymentId);
      if (unavailable) throw new RunnerError(unavailable);
    }
    const options = JSON.parse(row.options) as JobOptions;
    let params = JSON.parse(row.params) as Record<string, unknown>;

    // Decrypted as late as possible: here, just before the handler runs.
    // The caller's params.credentials: a map of names to strings, or, for a
    // workflow that declares nothing, whatever JSON the caller sent.
    let fromCaller: unknown;
    if (row.sealed_params_credentials) {
      fromCaller = JSON.parse(await vault.openForTenant(db, row.tenant_id, jobParamsCredentialsContext(row.id), row.sealed_params_credentials));
    }
    const secrets: Secret[] = stringLeaves(fromCaller, "credentials");
    let credentials: Record<string, string> | undefined;
    if (workflow.credentials.length === 0) {
      // Nothing declared: params pass through untouched, a caller's credentials key included.
      if (fromCaller !== undefined) params = { ...params, credentials: fromCaller };
    } else {
      const injected: Record<string, string> = {};
      const stored = await jobs.referencedCredentials(db, row.id);
      const used: { id: string; name: string; version: number }[] = [];
      for (const name of workflow.credentials) {
        const given = isRecord(fromCaller) ? fromCaller[name] : undefined;
        if (typeof given === "string") {
          injected[name] = given;
          continue;
        }
        const credential = stored.find((c) => c.name === name);
        if (!credential) continue;
        const value = await openStoredValue({ vault }, db, row.tenant_id, credential).catch((error: unknown) => {
          if (error instanceof VaultUnavailableError) throw error;
          throw new RunnerError(`The stored value of credential "${name}" failed its integrity check; set it again, then rerun the job.`);
        });
        injected[name] = value;
        secrets.push({ name, value });
        used.push(credential);
      }
      const missing = workflow.credentials.filter((name) => !(name in injected));
      if (missing.length > 0) logs.push("warn", `Declared credentials not found, so not injected: ${missing.join(", ")}.`);
      if (Object.keys(injected).length > 0) credentials = injected;
      this.#auditInjection(row, used);
    }

    // The declared browser profile's state, opened last, like the credentials.
    let storageState: StorageState | undefined;
    if (workflow.authProfile) {
      const { name } = workflow.authProfile;
      const opened = await openProfileForJob({ db, vault, clock }, row.tenant_id, row.id, name).catch((error: unknown) => {
        if (error instanceof ProfileUnusableError) throw new RunnerError(error.message);
        throw error;
      });
      profile.used = { id: opened.id };
      storageState = opened.state;
      if (storageState) secrets.push(...stateSecrets(storageState));
      else logs.push("warn", `Browser profile "${name}" has no saved state yet, so the browser starts without one.`);
    }

    // A trace records every page call with its arguments, typed values
    // included, and is not redacted: a job given any secret value gets none.
    const trace = options.trace === true && secrets.length === 0;
    if (options.trace === true && !trace) {
      logs.push("warn", "No trace was kept: this job was given credential values, which a trace would record in clear (README \"Job artifacts\").");
    }
    return this.#deps.executor.execute({
      jobId: row.id,
      tenantId: row.tenant_id,
      workflow,
      params,
      credentials,
      secrets,
      timeoutMs: row.timeout_seconds * 1000,
      graceMs: config.jobs.graceMs,
      interruptGraceMs: config.jobs.interruptGraceMs,
      maxResultBytes: config.jobs.maxResultBytes,
      browser: {
        headless: options.headless ?? true,
        startUrl: options.start_url ?? workflow.startUrl,
        viewport: options.viewport ?? workflow.viewport,
        chromiumPath: config.chromiumPath,
        capture: config.artifacts
          ? {
              screenshots: config.artifacts.screenshots,
              trace,
              // Every value the job was given to keep secret: an input holding one is masked.
              maskValues: secrets.map((s) => s.value),
              maxBytes: config.artifacts.maxBytes,
            }
          : undefined,
        storageState,
      },
      captureState: workflow.authProfile?.refresh === true,
      stop: abort.signal,
      log: (level, message, heldMs) => logs.push(level, message, heldMs),
      onHandlerStart: () => this.onHandlerStart?.(row.id),
    });
  }

  /** The rows of what the job's browser left; one over the size limit is a log line instead. */
  #artifactRows(row: jobs.JobRow, outcome: ExecuteOutcome, logs: JobLogWriter): ArtifactRow[] {
    const at = this.#deps.clock.now().toISOString();
    const rows: ArtifactRow[] = [];
    for (const artifact of outcome.artifacts ?? []) {
      if (!artifact.bytes) {
        logs.push("warn", `The ${artifact.kind} of this job was ${artifact.sizeBytes} bytes, over the limit of ${this.#deps.config.artifacts?.maxBytes ?? 0} bytes (UNDERSTUDY_ARTIFACT_MAX_BYTES); it was not kept.`);
        continue;
      }
      rows.push({
        id: (this.#deps.newId ?? randomId)(),
        tenant_id: row.tenant_id,
        job_id: row.id,
        kind: artifact.kind,
        content_type: artifact.contentType,
        size_bytes: artifact.bytes.byteLength,
        bytes: artifact.bytes,
        created_at: at,
      });
    }
    return rows;
  }

  /** Saves a refreshing profile's state after its job completed; a failure to save is the job's log line, not its failure. */
  async #refreshProfile(row: jobs.JobRow, name: string, profileId: string, state: unknown, logs: JobLogWriter): Promise<void> {
    if (state === undefined) {
      logs.push("info", `Browser profile "${name}" was not refreshed: the job did not open a browser.`);
      return;
    }
    const { db, vault, clock, config } = this.#deps;
    try {
      const saved = await saveRefreshedState({ db, vault, clock }, row.tenant_id, row.id, profileId, state, config.maxBodyBytes);
      if ("skipped" in saved) logs.push("warn", `Browser profile "${name}" was not refreshed: ${saved.skipped}.`);
      else logs.push("info", `Browser profile "${name}" refreshed (version ${saved.version}).`);
    } catch (error) {
      this.#deps.log.log("error", "could not save a refreshed browser profile", { job_id: row.id, error: error instanceof Error ? error.name : "error" });
      logs.push("warn", `Browser profile "${name}" was not refreshed: the server could not save it; the server log has the detail.`);
    }
  }

  /** One audit event per injected credential, batched like every other read (recordAuditEventSoon). */
  #auditInjection(row: jobs.JobRow, used: { id: string; name: string; version: number }[]) {
    const at = this.#deps.clock.now().toISOString();
    for (const c of used) {
      recordAuditEventSoon(this.#deps.db, {
        at,
        tenantId: row.tenant_id,
        apiKeyId: null,
        action: "credential.inject",
        outcome: "success",
        credentialId: c.id,
        credentialName: c.name,
        detail: JSON.stringify({ job_id: row.id, version: c.version }),
      });
    }
  }

}

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null && !Array.isArray(value);

/** Every string inside a caller's params.credentials, named by its key, for the redactor. */
function stringLeaves(value: unknown, name: string): Secret[] {
  if (typeof value === "string") return [{ name, value }];
  if (Array.isArray(value)) return value.flatMap((v) => stringLeaves(v, name));
  if (isRecord(value)) return Object.entries(value).flatMap(([key, v]) => stringLeaves(v, key));
  return [];
}

/** A failure of the runner's own that is safe to show as the job's error. */
class RunnerError extends Error {}

/**
 * Buffers a job's (already redacted) log lines and writes them in batches:
 * one insert per tick of the event loop instead of one per line.
 */
class JobLogWriter {
  #pending: { job_id: string; tenant_id: string; workflow: string; level: string; message: string; timestamp: string }[] = [];
  #flushing: Promise<void> = Promise.resolve();
  #scheduled = false;
  #closed = false;

  constructor(
    private readonly db: Db,
    private readonly row: jobs.JobRow,
    private readonly clock: Clock,
  ) {}

  /** heldMs: how long the line waited in the redactor; its timestamp is when the job wrote it. */
  push(level: LogLevel, message: string, heldMs = 0) {
    // A handler left behind after its job ended (it ignored its signal) writes nowhere.
    if (this.#closed) return;
    this.#pending.push({
      job_id: this.row.id,
      tenant_id: this.row.tenant_id,
      workflow: this.row.workflow,
      level,
      message,
      timestamp: new Date(this.clock.now().getTime() - Math.round(heldMs)).toISOString(),
    });
    if (!this.#scheduled) {
      this.#scheduled = true;
      setTimeout(() => void this.#flush(), 0);
    }
  }

  #flush(): Promise<void> {
    this.#scheduled = false;
    const lines = this.#pending.splice(0);
    this.#flushing = this.#flushing.then(() => jobs.insertJobLogs(this.db, lines)).catch(() => {});
    return this.#flushing;
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#flush();
  }
}
