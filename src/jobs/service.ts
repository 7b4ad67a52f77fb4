import { AppError } from "../errors";
import type { AppDeps, Caller } from "../http/route";
import { jobParamsCredentialsContext, type JobOptions } from "../runner/runner";
import type { Db } from "../store/database";
import { Batcher } from "../store/batcher";
import { lockTenants } from "../store/locks";
import type { CatalogEntry } from "../workflows/catalog";
import { refuseLiteralTarget } from "../webhooks/address";
import { referenceProfile } from "../profiles/service";
import { finishJob } from "./lifecycle";
import * as store from "./store";

export interface CreateJobInput {
  workflow: string;
  params: Record<string, unknown>;
  nonce?: string;
  timeout_seconds: number;
  headless?: boolean;
  start_url?: string;
  viewport?: { width: number; height: number };
  callback_url?: string;
  callback_secret?: string;
  skip_callbacks?: boolean;
  gpu?: boolean;
  /** Extension: keep a Playwright trace of the job's browser. */
  trace?: boolean;
  residential_proxy?: unknown;
  disable_default_proxy?: boolean;
  credential_id?: string;
  schedule_id?: string;
}

/**
 * Options of the hosted service that a self-hosted server cannot honour:
 * accepted, stored, and noted in the job log and in the jobs/create message
 * (the libretto CLI prints that message; it cannot read the job log).
 */
const HOSTED_ONLY: [keyof CreateJobInput, string][] = [
  ["gpu", "GPU machines are a Libretto Cloud feature; this job runs on this server's CPU."],
  ["residential_proxy", "Residential proxies are a Libretto Cloud feature; this job uses this server's own network."],
  ["disable_default_proxy", "Understudy has no default proxy; disable_default_proxy changes nothing."],
  ["credential_id", "credential_id is a Libretto Cloud option; Understudy injects the credentials the workflow declares."],
];

/** The note of each hosted-only option the input sets (false and absent set nothing). */
export function hostedOnlyNotes(input: CreateJobInput): string[] {
  return HOSTED_ONLY.filter(([field]) => input[field] !== undefined && input[field] !== false && input[field] !== null).map(([, note]) => note);
}

/**
 * The workflow a tenant's job of `name` would run (its own deployed one, else
 * the operator's file); 404 when there is none, 409 when it failed to load.
 */
export async function findRunnableWorkflow(deps: Pick<AppDeps, "catalog">, db: Db, tenantId: string, name: string): Promise<CatalogEntry> {
  const found = await deps.catalog.find(db, tenantId, name);
  if (!found) {
    throw new AppError("NOT_FOUND", `Workflow "${name}" not found. List the deployed workflows with /v1/workflows/list.`);
  }
  if (found.status !== "ready") {
    throw new AppError("CONFLICT", `Workflow "${name}" failed to load, so it cannot run: ${found.error}`, {
      data: { workflow: name },
    });
  }
  return found;
}

/** Queues a job for an API caller, then wakes the runner. `unhonoured` holds the notes of the hosted-only options it set. */
export async function createJob(deps: AppDeps, caller: Caller, input: CreateJobInput) {
  if (input.callback_url !== undefined) refuseLiteralTarget(input.callback_url, deps.webhooks.allowPrivate, "callback_url");
  const queued = await creates(deps).submit({ tenantId: caller.tenantId, input });
  deps.runner.wake();
  return { ...queued, unhonoured: hostedOnlyNotes(input) };
}

type Creates = Batcher<{ tenantId: string; input: CreateJobInput }, { id: string; workflow: string }>;
const batchers = new WeakMap<AppDeps, Creates>();

/**
 * The API's creates, group-committed: creates that arrive while a batch is
 * being written are queued together in the next one (one transaction, the
 * lookups and inserts of insertQueuedJobs shared). Each caller still gets
 * its own outcome, an AppError included.
 */
function creates(deps: AppDeps): Creates {
  let batcher = batchers.get(deps);
  if (!batcher) {
    batcher = new Batcher<{ tenantId: string; input: CreateJobInput }, { id: string; workflow: string }>(async (requests) => {
      const outcomes = await deps.db.transaction().execute((trx) => insertQueuedJobs(deps, trx, requests));
      return outcomes.map((outcome) => ("error" in outcome ? outcome.error : outcome));
    });
    batchers.set(deps, batcher);
  }
  return batcher;
}

/**
 * Inserts a queued job in the caller's transaction (the API's, or the
 * scheduler's). The references to the stored credentials it will use are
 * written in the same transaction, so from its commit on those credentials
 * cannot be deleted until the job ends. Throws an AppError for an unknown or
 * failed workflow and for a malformed params.credentials.
 */
export async function insertQueuedJob(
  deps: Pick<AppDeps, "catalog" | "vault" | "clock" | "newId">,
  trx: Db,
  tenantId: string,
  input: CreateJobInput,
): Promise<{ id: string; workflow: string }> {
  const [outcome] = await insertQueuedJobs(deps, trx, [{ tenantId, input }]);
  if (!outcome || "error" in outcome) throw outcome?.error ?? new Error("insertQueuedJobs returned nothing");
  return outcome;
}

export type QueuedJobOutcome = { id: string; workflow: string } | { error: AppError };

/**
 * insertQueuedJob for many jobs at once (the scheduler's fires): the same
 * rows, written with a few multi-row statements instead of three or more per
 * job, which is what lets thousands of fires be queued within a second. A
 * request that cannot be queued gets its AppError and writes nothing; the
 * others are inserted. Outcomes are in the order of the requests.
 */
export async function insertQueuedJobs(
  deps: Pick<AppDeps, "catalog" | "vault" | "clock" | "newId">,
  trx: Db,
  requests: readonly { tenantId: string; input: CreateJobInput }[],
): Promise<QueuedJobOutcome[]> {
  const outcomes: QueuedJobOutcome[] = [];
  const jobs: store.NewJob[] = [];
  const wanted: { job: store.NewJob; names: string[] }[] = [];
  const profiles: { job: store.NewJob; name: string }[] = [];
  const notes: Parameters<typeof store.insertJobLogs>[1] = [];
  // The scheduler queues many jobs of one tenant's workflow in one batch: look each up once.
  const lookups = new Map<string, Promise<CatalogEntry>>();
  const workflows: (CatalogEntry | AppError)[] = [];
  for (const { tenantId, input } of requests) {
    const key = `${tenantId}\n${input.workflow.trim()}`;
    let lookup = lookups.get(key);
    if (!lookup) lookups.set(key, (lookup = findRunnableWorkflow(deps, trx, tenantId, input.workflow)));
    try {
      workflows.push(await lookup);
    } catch (error) {
      if (!(error instanceof AppError)) throw error;
      workflows.push(error);
    }
  }
  // A job that will hold references (to stored credentials, to a browser
  // profile) takes them under its tenant's lock, which a delete of those
  // holds too: a delete either sees the reference or commits before the
  // lookup, never in between. Taken before anything is written (a tenant's
  // first seal writes its data key), in one sorted go: no two transactions
  // can then wait on each other.
  await lockTenants(
    trx,
    requests.filter((_, i) => takesReferences(workflows[i]!)).map((r) => r.tenantId),
  );
  for (const [i, { tenantId, input }] of requests.entries()) {
    const workflow = workflows[i]!;
    let prepared: Awaited<ReturnType<typeof prepareQueuedJob>>;
    try {
      if (workflow instanceof AppError) throw workflow;
      prepared = await prepareQueuedJob(deps, trx, tenantId, input, workflow);
    } catch (error) {
      if (!(error instanceof AppError)) throw error;
      outcomes.push({ error });
      continue;
    }
    jobs.push(prepared.job);
    if (prepared.wanted.length > 0) wanted.push({ job: prepared.job, names: prepared.wanted });
    if (prepared.profile !== undefined) profiles.push({ job: prepared.job, name: prepared.profile });
    notes.push(...prepared.notes);
    outcomes.push({ id: prepared.job.id, workflow: prepared.job.workflow });
  }
  await store.insertJobs(trx, jobs);
  // Jobs of one tenant and workflow want the same names: look each set up once.
  const found = new Map<string, { id: string }[]>();
  const references: store.NewReference[] = [];
  for (const { job, names } of wanted) {
    const key = `${job.tenant_id}\n${names.join("\n")}`;
    let stored = found.get(key);
    if (!stored) found.set(key, (stored = await store.findCredentialIdsByName(trx, job.tenant_id, names)));
    for (const c of stored) references.push({ job_id: job.id, credential_id: c.id, tenant_id: job.tenant_id, created_at: job.created_at });
  }
  await store.insertReferenceRows(trx, references);
  // Its browser profile, when the tenant has one of that name, cannot be deleted while the job waits or runs.
  for (const { job, name } of profiles) await referenceProfile(trx, job.tenant_id, job.id, name, job.created_at);
  for (let i = 0; i < notes.length; i += store.ROWS_PER_INSERT) await store.insertJobLogs(trx, notes.slice(i, i + store.ROWS_PER_INSERT));
  return outcomes;
}

/** Validates one job and builds its row (sealing what must be sealed), the stored credential names it wants and its log notes. */
async function prepareQueuedJob(
  deps: Pick<AppDeps, "catalog" | "vault" | "clock" | "newId">,
  trx: Db,
  tenantId: string,
  input: CreateJobInput,
  workflow: CatalogEntry,
) {
  const { credentials: given, ...params } = input.params;
  const declared = workflow.credentials;
  if (given !== undefined && declared.length > 0 && !isStringRecord(given)) {
    throw new AppError("BAD_REQUEST", "Invalid input: params.credentials must map credential names to string values.", {
      data: { issues: [{ path: ["params", "credentials"], message: "must map credential names to string values" }] },
    });
  }
  // Names are normalised like stored ones; the caller's values win over stored ones of the same name.
  // A workflow that declares nothing gets params.credentials untouched (still sealed, never in the row).
  const fromCaller =
    given === undefined
      ? undefined
      : declared.length === 0
        ? given
        : Object.fromEntries(Object.entries(given as Record<string, string>).map(([name, value]) => [name.trim().toLowerCase(), value]));
  const callerNames = fromCaller && declared.length > 0 ? declared.filter((name) => name in (fromCaller as object)) : [];

  const id = deps.newId();
  const at = deps.clock.now().toISOString();
  const options: JobOptions & Record<string, unknown> = {
    headless: input.headless,
    start_url: input.start_url,
    viewport: input.viewport,
    caller_credential_names: callerNames,
    gpu: input.gpu,
    residential_proxy: input.residential_proxy,
    disable_default_proxy: input.disable_default_proxy,
    credential_id: input.credential_id,
    trace: input.trace,
  };
  const sealedParamsCredentials =
    fromCaller !== undefined
      ? await deps.vault.sealForTenant(trx, tenantId, jobParamsCredentialsContext(id), JSON.stringify(fromCaller))
      : null;
  const sealedCallbackSecret = input.callback_secret
    ? await deps.vault.sealForTenant(trx, tenantId, `job/${id}/callback-secret`, input.callback_secret)
    : null;
  const job: store.NewJob = {
    id,
    tenant_id: tenantId,
    workflow: workflow.name,
    workflow_id: workflow.workflowId,
    deployment_id: workflow.deploymentId,
    deployment_version: workflow.deploymentVersion,
    params: JSON.stringify(params),
    sealed_params_credentials: sealedParamsCredentials,
    status: "queued",
    failure_class: null,
    result: null,
    error: null,
    mapped_stack: null,
    nonce: input.nonce ?? null,
    timeout_seconds: input.timeout_seconds,
    options: JSON.stringify(options),
    callback_url: input.callback_url ?? null,
    sealed_callback_secret: sealedCallbackSecret,
    skip_callbacks: input.skip_callbacks ? 1 : 0,
    schedule_id: input.schedule_id ?? null,
    created_at: at,
    started_at: null,
    completed_at: null,
    cancel_requested_at: null,
    lease_owner: null,
    lease_expires_at: null,
  };
  const notes = hostedOnlyNotes(input).map((message) => ({ job_id: id, tenant_id: tenantId, workflow: workflow.name, level: "info", message, timestamp: at }));
  return { job, wanted: declared.filter((name) => !callerNames.includes(name)), profile: workflow.authProfile?.name, notes };
}

export async function getJob(deps: AppDeps, caller: Caller, id: string) {
  const row = await store.findJob(deps.db, caller.tenantId, id);
  if (!row) throw jobNotFound(id);
  return row;
}

/**
 * Cancels a job. Queued: ended at once, in a transaction that also releases
 * its references. Running: its abort signal fires and the runner ends it
 * within the grace period. Already ended: 409.
 */
export async function cancelJob(deps: AppDeps, caller: Caller, id: string): Promise<"cancelled" | "cancelling"> {
  const at = deps.clock.now().toISOString();
  const outcome = await deps.db.transaction().execute(async (trx) => {
    let row = await store.findJob(trx, caller.tenantId, id);
    if (!row) throw jobNotFound(id);
    if (row.status === "queued") {
      const cancelled = await finishJob(trx, deps.jobEndHooks, id, ["queued"], {
        status: "cancelled",
        failure_class: "cancelled",
        result: null,
        error: "The job was cancelled before it started.",
        mapped_stack: null,
        completed_at: at,
      });
      if (cancelled) return "cancelled" as const;
      // Claimed meanwhile (on PostgreSQL the claim commits while this waits
      // for the row): what follows answers for the state it has now.
      row = await store.findJob(trx, caller.tenantId, id);
      if (!row) throw jobNotFound(id);
    }
    if (store.TERMINAL.includes(row.status as store.JobStatus)) {
      throw new AppError("CONFLICT", `Job ${id} already ended (${row.status}); there is nothing to cancel.`, {
        data: { status: row.status },
      });
    }
    await store.requestCancel(trx, id, at);
    await store.notifyCancel(trx, id);
    return "cancelling" as const;
  });
  if (outcome === "cancelling") deps.runner.cancel(id);
  return outcome;
}

export const jobNotFound = (id: string) =>
  new AppError("NOT_FOUND", `Job ${id} not found. List this tenant's jobs with /v1/jobs/list.`);

/** Whether a job of this workflow may take references when it is queued: it declares stored credentials or a browser profile. */
function takesReferences(workflow: CatalogEntry | AppError): boolean {
  return !(workflow instanceof AppError) && (workflow.credentials.length > 0 || workflow.authProfile !== undefined);
}

function isStringRecord(value: unknown): value is Record<string, string> {
  return typeof value === "object" && value !== null && !Array.isArray(value) && Object.values(value).every((v) => typeof v === "string");
}
