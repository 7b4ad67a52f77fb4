import { z } from "zod";
import { AppError } from "../errors";
import { cursorField, integerPosition, issueCursor, readCursor, readIntegerPosition, readUuidPosition, staleCursor, uuidPosition } from "../http/cursor";
import { defineRoute } from "../http/route";
import { successMessage, timestamp, uuid } from "../http/schemas";
import { shortSecretProblem } from "../webhooks/signing";
import * as service from "./service";
import * as store from "./store";

/** Optional fields accept null as "not given": clients differ on how they send an absent value. */
export const optional = <T extends z.ZodType>(schema: T) => schema.nullish().transform((v) => v ?? undefined);

export const httpUrl = z.url({ protocol: /^https?$/, error: "must be an http(s) URL" });

/**
 * The libretto CLI accepts any side of at least 1 (`--viewport WIDTHxHEIGHT`);
 * so do we, up to the largest side Chromium takes: above 10000000 its
 * Emulation.setDeviceMetricsOverride refuses the viewport and the browser
 * never starts. Measured with Chromium and Playwright: 0 is ignored (the page
 * gets Chromium's default size) and 1x1 works; huge areas are slow, not
 * refused (a 16384x16384 screenshot took 30 s, a 1000000x1000000 browser did
 * not start in 20 s), which fails that job only. A deployed workflow can set
 * any size itself, so a lower cap here would protect nothing.
 */
const viewportSide = z
  .number()
  .int("must be a whole number of pixels")
  .min(1, "must be at least 1 pixel: Chromium ignores a 0-pixel viewport and uses its default size")
  .max(10_000_000, "must be at most 10000000 pixels: Chromium refuses a larger viewport and the browser would not start");
export const viewport = z.object({ width: viewportSide, height: viewportSide });

/**
 * The libretto CLI sets no maximum (`--timeout-seconds`, an integer of at
 * least 1). Ours is the longest wait a JavaScript timer (setTimeout) can
 * hold, 2^31-1 ms: Bun and Node fire a longer one at once, so the job would
 * time out the moment it started.
 */
export const MAX_TIMEOUT_SECONDS = Math.floor((2 ** 31 - 1) / 1000);
export const timeoutSeconds = z
  .number()
  .int("must be a whole number")
  .min(1, "must be at least 1")
  .max(
    MAX_TIMEOUT_SECONDS,
    `must be at most ${MAX_TIMEOUT_SECONDS} (about 24 days): the job's timer cannot wait longer, and a longer timeout would end the job at once`,
  );
const jobId = uuid("job");
const JOBS_LIST = "/v1/jobs/list";
const LOGS_LIST = "/v1/logs/list";
const STATUSES = ["queued", "starting_browser", "running", "completed", "failed", "cancelled"] as const;

/** The HMAC key of a job's (or a schedule's) own callback: at least 16 bytes, like a webhook's signing secret. */
export const callbackSecret = z
  .string()
  .max(1024, "must be at most 1024 characters")
  .superRefine((secret, ctx) => {
    const problem = shortSecretProblem(secret);
    if (problem) ctx.addIssue({ code: "custom", message: problem });
  })
  .describe("HMAC key of the callback's signatures; at least 16 bytes");

export const jobCreateInput = z
  .object({
    workflow: z.string().trim().min(1, "must name a workflow").max(256, "must be at most 256 characters"),
    params: optional(z.record(z.string(), z.unknown())).transform((p) => p ?? {}),
    nonce: optional(z.string().max(256, "must be at most 256 characters")),
    timeout_seconds: optional(timeoutSeconds).transform((t) => t ?? 1800),
    headless: optional(z.boolean()),
    start_url: optional(httpUrl),
    viewport: optional(viewport),
    callback_url: optional(httpUrl),
    callback_secret: optional(callbackSecret),
    skip_callbacks: optional(z.boolean()),
    gpu: optional(z.boolean()),
    residential_proxy: optional(z.union([z.boolean(), z.string().max(256), z.record(z.string(), z.unknown())])),
    disable_default_proxy: optional(z.boolean()),
    credential_id: optional(z.string().max(256)),
    trace: optional(z.boolean()).describe("Extension: keep a Playwright trace of the job's browser as an artifact (/v1/jobs/artifacts)"),
  })
  .refine((i) => (i.callback_url === undefined) === (i.callback_secret === undefined), {
    message: "give callback_url and callback_secret together, or neither",
    path: ["callback_secret"],
  });

const jobOutput = z.object({
  job_id: z.uuid(),
  deployment_id: z.string().nullable(),
  deployment_version: z.string().nullable(),
  workflow_id: z.string(),
  workflow: z.string(),
  params: z.record(z.string(), z.unknown()),
  status: z.enum(STATUSES),
  created_at: timestamp,
  started_at: timestamp.nullable(),
  completed_at: timestamp.nullable(),
  result: z
    .unknown()
    .optional()
    .describe("The handler's return value; present only on a completed job (null when the handler returned nothing)"),
  error: z.string().nullable(),
  mapped_stack: z.string().nullable(),
  hosted_workflow_id: z.null(),
  failure_class: z.enum(["timeout", "cancelled", "interrupted", "error"]).nullable(),
  timeout_seconds: z.number(),
  nonce: z.string().nullable(),
  schedule_id: z.string().nullable(),
});

/**
 * `result` is present only once the job completed: the libretto CLI prints
 * `Result: ...` whenever the key is there, so a running, failed or cancelled
 * job must not carry one. A completed job always does, null when the handler
 * returned nothing (stored as JSON null), as in the job.completed webhook.
 */
export function toJobOutput(row: store.JobRow): z.input<typeof jobOutput> {
  return {
    job_id: row.id,
    deployment_id: row.deployment_id,
    deployment_version: row.deployment_version,
    workflow_id: row.workflow_id,
    workflow: row.workflow,
    params: JSON.parse(row.params),
    status: row.status as (typeof STATUSES)[number],
    created_at: row.created_at,
    started_at: row.started_at,
    completed_at: row.completed_at,
    ...(row.status === "completed" ? { result: row.result === null ? null : JSON.parse(row.result) } : {}),
    error: row.error,
    mapped_stack: row.mapped_stack,
    hosted_workflow_id: null,
    failure_class: row.failure_class as "timeout" | null,
    timeout_seconds: row.timeout_seconds,
    nonce: row.nonce,
    schedule_id: row.schedule_id,
  };
}

export const jobRoutes = [
  defineRoute({
    path: "/v1/jobs/create",
    summary: "Queue a run of a workflow; it gets exactly the credentials the workflow declares.",
    input: jobCreateInput,
    output: z.object({ ...successMessage, job_id: z.uuid(), status: z.literal("queued") }),
    async handler({ deps, caller }, input) {
      const { id, workflow, unhonoured } = await service.createJob(deps, caller, input);
      const message = [`Job queued for workflow "${workflow}".`, ...unhonoured].join(" ");
      return { success: true as const, job_id: id, status: "queued" as const, message };
    },
  }),
  defineRoute({
    path: "/v1/jobs/get",
    summary: "One job: status, result or error. Never an injected value.",
    input: z.object({ id: jobId }),
    output: jobOutput,
    async handler({ deps, caller }, input) {
      return toJobOutput(await service.getJob(deps, caller, input.id));
    },
  }),
  defineRoute({
    path: "/v1/jobs/list",
    summary: "The tenant's jobs, newest first, with an opaque cursor.",
    input: z.object({
      status: optional(z.enum(STATUSES, `must be one of ${STATUSES.join(", ")}`)),
      workflow: optional(z.string().trim().min(1).max(256)),
      limit: optional(z.number().int().min(1, "must be at least 1").max(100, "must be at most 100")).transform((l) => l ?? 20),
      cursor: optional(cursorField),
    }),
    output: z.object({
      jobs: z.array(
        z.object({
          job_id: z.uuid(),
          deployment_id: z.string().nullable(),
          workflow_id: z.string(),
          workflow: z.string(),
          status: z.enum(STATUSES),
          created_at: timestamp,
          completed_at: timestamp.nullable(),
        }),
      ),
      next_cursor: z.string().nullable(),
    }),
    async handler({ deps, caller }, input) {
      // The cursor holds the last job's id; the page goes on from that job's place.
      let beforeSeq: number | undefined;
      if (input.cursor !== undefined) {
        const anchor = readCursor(deps.vault, caller.tenantId, JOBS_LIST, "cursor", input.cursor, readUuidPosition);
        beforeSeq = (await store.findJob(deps.db, caller.tenantId, anchor))?.seq;
        if (beforeSeq === undefined) throw staleCursor("cursor", "a job");
      }
      const rows = await store.listJobs(deps.db, caller.tenantId, { ...input, beforeSeq, limit: input.limit + 1 });
      const page = rows.slice(0, input.limit);
      return {
        jobs: page.map((r) => ({
          job_id: r.id,
          deployment_id: r.deployment_id,
          workflow_id: r.workflow_id,
          workflow: r.workflow,
          status: r.status as (typeof STATUSES)[number],
          created_at: r.created_at,
          completed_at: r.completed_at,
        })),
        next_cursor: rows.length > input.limit ? issueCursor(deps.vault, caller.tenantId, JOBS_LIST, uuidPosition(page[page.length - 1]!.id)) : null,
      };
    },
  }),
  defineRoute({
    path: "/v1/jobs/cancel",
    summary: "Cancel a queued or running job; 409 when it already ended.",
    input: z.object({ id: jobId }),
    output: z.object(successMessage),
    async handler({ deps, caller }, input) {
      const outcome = await service.cancelJob(deps, caller, input.id);
      return {
        success: true as const,
        message: outcome === "cancelled" ? `Job ${input.id} cancelled.` : `Job ${input.id} is being cancelled; it ends within the grace period.`,
      };
    },
  }),
  defineRoute({
    path: "/v1/logs/list",
    summary: "Job log lines, oldest first, with a page token. Values are redacted before they are stored.",
    input: z.object({
      jobId: optional(jobId),
      workflow: optional(z.string().trim().min(1).max(256)),
      level: optional(z.enum(["info", "warn", "error"], "must be info, warn or error")),
      pageToken: optional(cursorField),
      limit: optional(z.number().int().min(1, "must be at least 1").max(1000, "must be at most 1000")).transform((l) => l ?? 100),
    }),
    output: z.object({
      logs: z.array(z.object({ jobId: z.uuid(), workflow: z.string(), level: z.enum(["info", "warn", "error"]), message: z.string(), timestamp })),
      nextPageToken: z.string().nullable(),
    }),
    async handler({ deps, caller }, input) {
      if (input.jobId) await service.getJob(deps, caller, input.jobId);
      // Log lines have no public id: the token holds the row number, sealed.
      const afterId =
        input.pageToken === undefined ? undefined : readCursor(deps.vault, caller.tenantId, LOGS_LIST, "pageToken", input.pageToken, readIntegerPosition);
      const rows = await store.listJobLogs(deps.db, caller.tenantId, { ...input, afterId, limit: input.limit + 1 });
      const page = rows.slice(0, input.limit);
      return {
        logs: page.map((r) => ({
          jobId: r.job_id,
          workflow: r.workflow,
          level: r.level as "info",
          message: r.message,
          timestamp: r.timestamp,
        })),
        nextPageToken: rows.length > input.limit ? issueCursor(deps.vault, caller.tenantId, LOGS_LIST, integerPosition(page[page.length - 1]!.id)) : null,
      };
    },
  }),
  defineRoute({
    path: "/v1/tenant/settings",
    summary: "Read ({}) or write the tenant's settings.",
    input: z.object({ disable_job_failure_notifications: optional(z.boolean()) }),
    output: z.object({
      code_sharing_enabled: z.boolean(),
      disable_job_failure_notifications: z.boolean(),
      debug_notification_email: z.null(),
    }),
    async handler({ deps, caller }, input) {
      if (input.disable_job_failure_notifications !== undefined) {
        await store.writeTenantSettings(deps.db, caller.tenantId, input.disable_job_failure_notifications, deps.clock.now().toISOString());
      }
      const settings = await store.readTenantSettings(deps.db, caller.tenantId);
      return {
        code_sharing_enabled: false,
        disable_job_failure_notifications: settings?.disable_job_failure_notifications === 1,
        debug_notification_email: null,
      };
    },
  }),
];
