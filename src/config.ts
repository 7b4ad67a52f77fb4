import { readFileSync } from "node:fs";
import { z } from "zod";
import { FatalError } from "./errors";
import { decodeMasterKey } from "./vault/master-key";

/**
 * Every setting of Understudy, read once from the environment and validated.
 * Nothing else in the code reads process.env.
 */
export interface Config {
  readonly listen: { readonly hostname: string; readonly port: number };
  /** Database file; undefined means "the default of the command" (serve: ./data, dev: ./.understudy). */
  readonly dbPath: string | undefined;
  /**
   * PostgreSQL instead of the SQLite file (UNDERSTUDY_DATABASE_URL, or _FILE):
   * a secret (it may hold a password), never logged or echoed.
   */
  readonly databaseUrl: string | undefined;
  /** Connections each instance keeps to PostgreSQL at most. */
  readonly dbPoolSize: number;
  readonly masterKey: Uint8Array | undefined;
  readonly masterKeyPrevious: Uint8Array | undefined;
  /** The files the keys were read from (UNDERSTUDY_MASTER_KEY_FILE, ..._PREVIOUS_FILE): hidden from worker processes. */
  readonly keyFiles: readonly string[];
  readonly maxBodyBytes: number;
  readonly maxValueBytes: number;
  /** How long an opened credential value is kept for the next read of it (0: not at all); see RecentValues. */
  readonly valueCacheMs: number;
  readonly rateLimit: { readonly perSecond: number; readonly burst: number };
  readonly requestLog: boolean;
  readonly dbSynchronous: "normal" | "full";
  readonly busyTimeoutMs: number;
  /** Workflow files; undefined means ./workflows of the working directory. */
  readonly workflowsDir: string | undefined;
  readonly jobs: {
    readonly concurrency: number;
    /** How long a cancelled or timed-out handler that ignores its signal gets before its job ends anyway. */
    readonly graceMs: number;
    /**
     * On SIGTERM, the whole time the runner takes to end its jobs: running
     * jobs may go on until `interruptGraceMs` before its end, are then told to
     * stop, and any still running at its end are killed and end interrupted.
     */
    readonly shutdownGraceMs: number;
    /** The grace of a job told to stop by a shutdown: graceMs, cut to fit inside shutdownGraceMs. */
    readonly interruptGraceMs: number;
    readonly maxResultBytes: number;
    /** How often the runner looks for queued jobs it was not told about (another process's). */
    readonly pollMs: number;
    /**
     * On PostgreSQL, how long a running job's lease lasts; its instance
     * renews it every third of this. A job whose instance died ends
     * interrupted this long after the instance's last renewal.
     */
    readonly leaseMs: number;
  };
  readonly chromiumPath: string | undefined;
  readonly workers: {
    /** process: each handler runs in a worker process of its tenant; none: in the server (one trusted operator only). */
    readonly isolation: "process" | "none";
    /** auto: bubblewrap when it works here; bwrap: required; none: the process boundary only. */
    readonly sandbox: "auto" | "bwrap" | "none";
    /** Most idle warm workers (each may hold a browser), over all tenants. */
    readonly maxWarm: number;
    /** An idle worker is stopped after this long. */
    readonly idleMs: number;
    /** Proportional memory of all workers with their browsers, past which idle ones are stopped. */
    readonly memoryBytes: number;
  };
  readonly deployments: {
    /** Where uploads are unpacked; undefined: <the database's directory>/deployments. */
    readonly dir: string | undefined;
    /** Largest upload (the gzip'd tar, decoded from base64). */
    readonly maxUploadBytes: number;
    /** Largest unpacked size of one upload. */
    readonly maxUnpackedBytes: number;
    /** The request body limit of deployments/create: the upload in base64, plus room for the rest of the JSON. */
    readonly maxBodyBytes: number;
    /** A build's lease: an instance that stops renewing it (it died) loses the build to another after this long. */
    readonly buildLeaseMs: number;
  };
  readonly webhooks: {
    /**
     * Loopback and private addresses are refused as targets unless this is
     * on; undefined (not set) means the command's default: off for serve, on for dev.
     */
    readonly allowPrivate: boolean | undefined;
    readonly timeoutMs: number;
    /** Delay before each attempt, in ms: the first is immediate; past the last, the delivery has failed. */
    readonly retryScheduleMs: readonly number[];
  };
  readonly schedules: {
    /** How often the scheduler looks for due schedules. */
    readonly tickMs: number;
    /**
     * TEST ONLY (UNDERSTUDY_TEST_ONLY_SCHEDULER_CLOCK="ORIGIN_MS,SPEED"): the
     * scheduler's clock runs SPEED times faster than real time from the Unix
     * millisecond ORIGIN_MS, so the multi-instance tests see minutes of cron
     * fires in seconds, every process on the same fake time. Not in --help;
     * never set it in production.
     */
    readonly testOnlyClock?: { readonly originMs: number; readonly speed: number } | undefined;
  };
  /** Remote browser sessions (/v1/sessions/*). */
  readonly sessions: {
    /** A session with no client connected and no CDP traffic for this long is closed. */
    readonly idleMs: number;
    /** Open sessions one tenant may have at once. */
    readonly perTenant: number;
    /** Open sessions over all tenants (each is a Chromium of its own). */
    readonly max: number;
    /** A running session's pages are screenshotted for its recording this often; 0: only when it ends. */
    readonly recordingIntervalMs: number;
  };
  readonly artifacts: {
    /** always: a browser job's screenshot when it fails and when it completes; failure: when it fails; never. */
    readonly screenshots: "always" | "failure" | "never";
    /** Largest artifact kept (a screenshot or a trace); a larger one is noted in the job log instead. */
    readonly maxBytes: number;
    /** Artifacts older than this many days are deleted; 0 keeps them. */
    readonly retentionDays: number;
    /** Past this many bytes of artifacts, a tenant's oldest are deleted first; 0: no cap. */
    readonly maxBytesPerTenant: number;
    /** Log lines of jobs that ended more than this many days ago are deleted; 0 keeps them. */
    readonly logRetentionDays: number;
    /** Finished webhook deliveries (succeeded or failed) older than this many days are deleted; 0 keeps them. */
    readonly deliveryRetentionDays: number;
    /** How often the pruner runs. */
    readonly pruneIntervalMs: number;
  };
}

/** The variables Understudy reads, with their defaults, for `--help` and the README. */
export const ENVIRONMENT = {
  UNDERSTUDY_LISTEN: "127.0.0.1:8787",
  UNDERSTUDY_DB: "./data/understudy.db (dev: ./.understudy/understudy.db)",
  UNDERSTUDY_DATABASE_URL: "(none: SQLite; postgres://user:password@host:5432/db selects PostgreSQL)",
  UNDERSTUDY_DATABASE_URL_FILE: "(none)",
  UNDERSTUDY_DB_POOL_SIZE: "10 (PostgreSQL connections per instance)",
  UNDERSTUDY_MASTER_KEY: "(none; serve needs it or _FILE)",
  UNDERSTUDY_MASTER_KEY_FILE: "(none)",
  UNDERSTUDY_MASTER_KEY_PREVIOUS: "(none; only while rotating)",
  UNDERSTUDY_MASTER_KEY_PREVIOUS_FILE: "(none)",
  UNDERSTUDY_MAX_BODY_BYTES: "1048576",
  UNDERSTUDY_MAX_VALUE_BYTES: "65536",
  UNDERSTUDY_VALUE_CACHE_SECONDS: "60 (an opened credential value stays in memory this long for the next read of it; 0: none)",
  UNDERSTUDY_RATE_LIMIT_PER_SECOND: "100 per API key and per instance (0 turns the limit off)",
  UNDERSTUDY_RATE_LIMIT_BURST: "200",
  UNDERSTUDY_REQUEST_LOG: "on",
  UNDERSTUDY_DB_SYNCHRONOUS: "normal",
  UNDERSTUDY_DB_BUSY_TIMEOUT_MS: "5000",
  UNDERSTUDY_WORKFLOWS_DIR: "./workflows",
  UNDERSTUDY_CONCURRENCY: "4",
  UNDERSTUDY_JOB_GRACE_MS: "5000",
  UNDERSTUDY_SHUTDOWN_GRACE_MS: "30000 (the Docker image: 7000); the job grace counts within it",
  UNDERSTUDY_MAX_RESULT_BYTES: "1048576",
  UNDERSTUDY_RUNNER_POLL_MS: "1000",
  UNDERSTUDY_JOB_LEASE_MS: "15000 (PostgreSQL: a dead instance's running jobs end interrupted after this)",
  UNDERSTUDY_CHROMIUM_PATH: "(chromium on PATH)",
  UNDERSTUDY_WORKFLOW_ISOLATION: "process (none: handlers in the server; a single trusted operator only)",
  UNDERSTUDY_WORKER_SANDBOX: "auto (bwrap when it works here, else none; bwrap: required)",
  UNDERSTUDY_WARM_WORKERS: "8, or UNDERSTUDY_CONCURRENCY when that is more",
  UNDERSTUDY_WORKER_IDLE_MS: "300000",
  UNDERSTUDY_WORKER_MEMORY_MB: "4096",
  UNDERSTUDY_DEPLOYMENTS_DIR: "(the database's directory)/deployments",
  UNDERSTUDY_MAX_DEPLOY_BYTES: "52428800 (an upload, gzip'd)",
  UNDERSTUDY_MAX_DEPLOY_UNPACKED_BYTES: "262144000",
  UNDERSTUDY_DEPLOY_BUILD_LEASE_MS: "60000",
  UNDERSTUDY_WEBHOOK_ALLOW_PRIVATE: "off (dev: on)",
  UNDERSTUDY_WEBHOOK_TIMEOUT_MS: "15000",
  UNDERSTUDY_WEBHOOK_RETRY_SCHEDULE_MS: "0,5000,300000,1800000,7200000,18000000,36000000,36000000",
  UNDERSTUDY_SCHEDULER_TICK_MS: "1000",
  UNDERSTUDY_SESSION_IDLE_MS: "300000",
  UNDERSTUDY_SESSIONS_PER_TENANT: "2",
  UNDERSTUDY_MAX_SESSIONS: "4 (0 turns remote browser sessions off)",
  UNDERSTUDY_SESSION_RECORDING_INTERVAL_MS: "10000 (0: only a final screenshot)",
  UNDERSTUDY_SCREENSHOTS: "always (a browser job's screenshot when it fails and when it completes; failure; never)",
  UNDERSTUDY_ARTIFACT_MAX_BYTES: "20971520 (one screenshot or trace)",
  UNDERSTUDY_ARTIFACT_RETENTION_DAYS: "7 (0 keeps them)",
  UNDERSTUDY_ARTIFACT_MAX_BYTES_PER_TENANT: "1073741824 (oldest deleted first; 0: no cap)",
  UNDERSTUDY_LOG_RETENTION_DAYS: "30 (log lines of finished jobs; 0 keeps them)",
  UNDERSTUDY_DELIVERY_RETENTION_DAYS: "30 (finished webhook deliveries; 0 keeps them)",
  UNDERSTUDY_PRUNE_INTERVAL_MS: "3600000",
} as const;

const positiveInt = (what: string) =>
  z
    .string()
    .trim()
    .regex(/^\d+$/, `must be a whole number (${what})`)
    .transform(Number)
    .pipe(z.number().int().positive(`must be at least 1 (${what})`).max(2 ** 31, `is too large (${what})`));

const nonNegativeInt = (what: string) =>
  z
    .string()
    .trim()
    .regex(/^\d+$/, `must be a whole number (${what})`)
    .transform(Number)
    .pipe(z.number().int().max(2 ** 31, `is too large (${what})`));

const listen = z
  .string()
  .trim()
  .transform((value, ctx) => {
    const match = /^(?:\[([0-9a-fA-F:]+)\]|([^:\s]+)):(\d{1,5})$/.exec(value);
    const port = match ? Number(match[3]) : NaN;
    if (!match || port > 65535) {
      ctx.addIssue({ code: "custom", message: "must be HOST:PORT, e.g. 127.0.0.1:8787 or 0.0.0.0:8787" });
      return z.NEVER;
    }
    return { hostname: (match[1] ?? match[2])!, port };
  });

const onOff = z
  .string()
  .trim()
  .toLowerCase()
  .refine((v) => ["on", "off", "1", "0", "true", "false"].includes(v), "must be on or off")
  .transform((v) => v === "on" || v === "1" || v === "true");

const envSchema = z.object({
  UNDERSTUDY_LISTEN: listen.default({ hostname: "127.0.0.1", port: 8787 }),
  UNDERSTUDY_DB: z.string().trim().min(1, "must be a file path").optional(),
  UNDERSTUDY_MAX_BODY_BYTES: positiveInt("bytes").default(1024 * 1024),
  UNDERSTUDY_MAX_VALUE_BYTES: positiveInt("bytes").default(64 * 1024),
  UNDERSTUDY_VALUE_CACHE_SECONDS: nonNegativeInt("seconds; 0 keeps no opened value").pipe(z.number().max(3600, "is too long (at most 3600 seconds)")).default(60),
  UNDERSTUDY_RATE_LIMIT_PER_SECOND: nonNegativeInt("requests per second per API key; 0 turns it off").default(100),
  UNDERSTUDY_RATE_LIMIT_BURST: positiveInt("requests").default(200),
  UNDERSTUDY_REQUEST_LOG: onOff.default(true),
  UNDERSTUDY_DB_SYNCHRONOUS: z.enum(["normal", "full"], "must be normal or full").default("normal"),
  UNDERSTUDY_DB_BUSY_TIMEOUT_MS: positiveInt("milliseconds").default(5000),
  UNDERSTUDY_DB_POOL_SIZE: positiveInt("connections").pipe(z.number().max(1000, "is too large (at most 1000 connections)")).default(10),
  UNDERSTUDY_WORKFLOWS_DIR: z.string().trim().min(1, "must be a directory path").optional(),
  UNDERSTUDY_CONCURRENCY: positiveInt("jobs at once").pipe(z.number().max(256, "is too large (at most 256 jobs at once)")).default(4),
  UNDERSTUDY_JOB_GRACE_MS: positiveInt("milliseconds").default(5000),
  UNDERSTUDY_SHUTDOWN_GRACE_MS: nonNegativeInt("milliseconds").default(30_000),
  UNDERSTUDY_MAX_RESULT_BYTES: positiveInt("bytes").default(1024 * 1024),
  UNDERSTUDY_RUNNER_POLL_MS: positiveInt("milliseconds").default(1000),
  UNDERSTUDY_JOB_LEASE_MS: positiveInt("milliseconds")
    .pipe(z.number().min(300, "is too short (at least 300 milliseconds: the lease is renewed every third of it)").max(3_600_000, "is too long (at most 3600000 milliseconds)"))
    .default(15_000),
  UNDERSTUDY_CHROMIUM_PATH: z.string().trim().min(1, "must be a file path").optional(),
  UNDERSTUDY_WORKFLOW_ISOLATION: z.enum(["process", "none"], "must be process or none").default("process"),
  UNDERSTUDY_WORKER_SANDBOX: z.enum(["auto", "bwrap", "none"], "must be auto, bwrap or none").default("auto"),
  UNDERSTUDY_WARM_WORKERS: nonNegativeInt("idle workers kept warm").optional(),
  UNDERSTUDY_WORKER_IDLE_MS: positiveInt("milliseconds").default(300_000),
  UNDERSTUDY_WORKER_MEMORY_MB: positiveInt("megabytes").default(4096),
  UNDERSTUDY_DEPLOYMENTS_DIR: z.string().trim().min(1, "must be a directory path").optional(),
  UNDERSTUDY_MAX_DEPLOY_BYTES: positiveInt("bytes").pipe(z.number().max(1024 ** 3, "is too large (at most 1 GiB)")).default(50 * 1024 * 1024),
  UNDERSTUDY_MAX_DEPLOY_UNPACKED_BYTES: positiveInt("bytes").pipe(z.number().max(1024 ** 3, "is too large (at most 1 GiB)")).default(250 * 1024 * 1024),
  UNDERSTUDY_DEPLOY_BUILD_LEASE_MS: positiveInt("milliseconds").pipe(z.number().min(1000, "must be at least 1000")).default(60_000),
  UNDERSTUDY_WEBHOOK_ALLOW_PRIVATE: onOff.optional(),
  UNDERSTUDY_WEBHOOK_TIMEOUT_MS: positiveInt("milliseconds").default(15_000),
  UNDERSTUDY_WEBHOOK_RETRY_SCHEDULE_MS: z
    .string()
    .trim()
    .regex(/^\d+(,\d+)*$/, "must be a comma-separated list of delays in milliseconds, e.g. 0,5000,300000")
    .transform((v) => v.split(",").map(Number))
    .default([0, 5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000]),
  UNDERSTUDY_SCHEDULER_TICK_MS: positiveInt("milliseconds").default(1000),
  UNDERSTUDY_TEST_ONLY_SCHEDULER_CLOCK: z
    .string()
    .trim()
    .regex(/^\d+,\d+$/, "must be ORIGIN_MS,SPEED (test only)")
    .transform((v) => {
      const [originMs, speed] = v.split(",").map(Number);
      return { originMs: originMs!, speed: speed! };
    })
    .optional(),
  UNDERSTUDY_SESSION_IDLE_MS: positiveInt("milliseconds").default(300_000),
  UNDERSTUDY_SESSIONS_PER_TENANT: positiveInt("sessions").default(2),
  UNDERSTUDY_MAX_SESSIONS: nonNegativeInt("sessions; 0 turns sessions off").default(4),
  UNDERSTUDY_SESSION_RECORDING_INTERVAL_MS: nonNegativeInt("milliseconds; 0: only a final screenshot").default(10_000),
  UNDERSTUDY_SCREENSHOTS: z.enum(["always", "failure", "never"], "must be always, failure or never").default("always"),
  // A worker sends an artifact base64'd in one protocol message (at most 32 MiB): 23 MiB fits (~30.7 MiB).
  UNDERSTUDY_ARTIFACT_MAX_BYTES: positiveInt("bytes").pipe(z.number().max(23 * 1024 * 1024, "is too large (at most 24117248 bytes)")).default(20 * 1024 * 1024),
  UNDERSTUDY_ARTIFACT_RETENTION_DAYS: nonNegativeInt("days; 0 keeps them").default(7),
  UNDERSTUDY_ARTIFACT_MAX_BYTES_PER_TENANT: nonNegativeInt("bytes; 0: no cap").default(1024 * 1024 * 1024),
  UNDERSTUDY_LOG_RETENTION_DAYS: nonNegativeInt("days; 0 keeps them").default(30),
  UNDERSTUDY_DELIVERY_RETENTION_DAYS: nonNegativeInt("days; 0 keeps them").default(30),
  UNDERSTUDY_PRUNE_INTERVAL_MS: positiveInt("milliseconds").default(3_600_000),
});

type Env = Record<string, string | undefined>;

/**
 * Validates the environment. Every bad variable is reported at once, by name,
 * with what it needs; a secret's value is never echoed.
 */
export function loadConfig(env: Env, readFile: (path: string) => string = (p) => readFileSync(p, "utf8")): Config {
  const problems: string[] = [];
  const present = Object.fromEntries(
    Object.keys(envSchema.shape).flatMap((k) => (env[k] === undefined || env[k] === "" ? [] : [[k, env[k]]])),
  );
  const parsed = envSchema.safeParse(present);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) problems.push(`${String(issue.path[0])} ${issue.message}`);
  }

  const databaseUrl = readDatabaseUrl(env, readFile, problems);
  const masterKey = readKey(env, "UNDERSTUDY_MASTER_KEY", readFile, problems);
  const masterKeyPrevious = readKey(env, "UNDERSTUDY_MASTER_KEY_PREVIOUS", readFile, problems);
  if (masterKey && masterKeyPrevious && equalBytes(masterKey, masterKeyPrevious)) {
    problems.push("UNDERSTUDY_MASTER_KEY_PREVIOUS is the same key as UNDERSTUDY_MASTER_KEY; give the old key");
  }

  if (problems.length > 0 || !parsed.success) {
    throw new FatalError(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
  }
  const v = parsed.data;
  return Object.freeze({
    listen: Object.freeze(v.UNDERSTUDY_LISTEN),
    dbPath: v.UNDERSTUDY_DB,
    databaseUrl,
    dbPoolSize: v.UNDERSTUDY_DB_POOL_SIZE,
    masterKey,
    masterKeyPrevious,
    keyFiles: Object.freeze(
      ["UNDERSTUDY_MASTER_KEY_FILE", "UNDERSTUDY_MASTER_KEY_PREVIOUS_FILE", "UNDERSTUDY_DATABASE_URL_FILE"].flatMap((name) => env[name]?.trim() || []),
    ),
    maxBodyBytes: v.UNDERSTUDY_MAX_BODY_BYTES,
    maxValueBytes: v.UNDERSTUDY_MAX_VALUE_BYTES,
    valueCacheMs: v.UNDERSTUDY_VALUE_CACHE_SECONDS * 1000,
    rateLimit: Object.freeze({ perSecond: v.UNDERSTUDY_RATE_LIMIT_PER_SECOND, burst: v.UNDERSTUDY_RATE_LIMIT_BURST }),
    requestLog: v.UNDERSTUDY_REQUEST_LOG,
    dbSynchronous: v.UNDERSTUDY_DB_SYNCHRONOUS,
    busyTimeoutMs: v.UNDERSTUDY_DB_BUSY_TIMEOUT_MS,
    workflowsDir: v.UNDERSTUDY_WORKFLOWS_DIR,
    jobs: Object.freeze({
      concurrency: v.UNDERSTUDY_CONCURRENCY,
      graceMs: v.UNDERSTUDY_JOB_GRACE_MS,
      shutdownGraceMs: v.UNDERSTUDY_SHUTDOWN_GRACE_MS,
      // One budget: `docker stop -t` (10 s by default) must cover the job grace too.
      interruptGraceMs: Math.min(v.UNDERSTUDY_JOB_GRACE_MS, v.UNDERSTUDY_SHUTDOWN_GRACE_MS),
      maxResultBytes: v.UNDERSTUDY_MAX_RESULT_BYTES,
      pollMs: v.UNDERSTUDY_RUNNER_POLL_MS,
      leaseMs: v.UNDERSTUDY_JOB_LEASE_MS,
    }),
    chromiumPath: v.UNDERSTUDY_CHROMIUM_PATH,
    workers: Object.freeze({
      isolation: v.UNDERSTUDY_WORKFLOW_ISOLATION,
      sandbox: v.UNDERSTUDY_WORKER_SANDBOX,
      // Fewer warm workers than jobs at once would stop, after every busy
      // spell, workers the next one starts again (measured at concurrency 32
      // with 8: 81 jobs/s, the machine busy starting workers).
      maxWarm: v.UNDERSTUDY_WARM_WORKERS ?? Math.max(8, v.UNDERSTUDY_CONCURRENCY),
      idleMs: v.UNDERSTUDY_WORKER_IDLE_MS,
      memoryBytes: v.UNDERSTUDY_WORKER_MEMORY_MB * 1024 * 1024,
    }),
    deployments: Object.freeze({
      dir: v.UNDERSTUDY_DEPLOYMENTS_DIR,
      maxUploadBytes: v.UNDERSTUDY_MAX_DEPLOY_BYTES,
      maxUnpackedBytes: v.UNDERSTUDY_MAX_DEPLOY_UNPACKED_BYTES,
      maxBodyBytes: Math.ceil((v.UNDERSTUDY_MAX_DEPLOY_BYTES * 4) / 3) + 64 * 1024,
      buildLeaseMs: v.UNDERSTUDY_DEPLOY_BUILD_LEASE_MS,
    }),
    webhooks: Object.freeze({
      allowPrivate: v.UNDERSTUDY_WEBHOOK_ALLOW_PRIVATE,
      timeoutMs: v.UNDERSTUDY_WEBHOOK_TIMEOUT_MS,
      retryScheduleMs: Object.freeze(v.UNDERSTUDY_WEBHOOK_RETRY_SCHEDULE_MS),
    }),
    schedules: Object.freeze({ tickMs: v.UNDERSTUDY_SCHEDULER_TICK_MS, testOnlyClock: v.UNDERSTUDY_TEST_ONLY_SCHEDULER_CLOCK }),
    sessions: Object.freeze({
      idleMs: v.UNDERSTUDY_SESSION_IDLE_MS,
      perTenant: v.UNDERSTUDY_SESSIONS_PER_TENANT,
      max: v.UNDERSTUDY_MAX_SESSIONS,
      recordingIntervalMs: v.UNDERSTUDY_SESSION_RECORDING_INTERVAL_MS,
    }),
    artifacts: Object.freeze({
      screenshots: v.UNDERSTUDY_SCREENSHOTS,
      maxBytes: v.UNDERSTUDY_ARTIFACT_MAX_BYTES,
      retentionDays: v.UNDERSTUDY_ARTIFACT_RETENTION_DAYS,
      maxBytesPerTenant: v.UNDERSTUDY_ARTIFACT_MAX_BYTES_PER_TENANT,
      logRetentionDays: v.UNDERSTUDY_LOG_RETENTION_DAYS,
      deliveryRetentionDays: v.UNDERSTUDY_DELIVERY_RETENTION_DAYS,
      pruneIntervalMs: v.UNDERSTUDY_PRUNE_INTERVAL_MS,
    }),
  });
}

/** The names of the variables that hold key material. */
export const SECRET_VARIABLES = ["UNDERSTUDY_MASTER_KEY", "UNDERSTUDY_MASTER_KEY_PREVIOUS"] as const;

/**
 * Returns a snapshot of the environment and deletes the key material from
 * the live one, so nothing that runs later (workflow code among it) can read
 * it from process.env.
 */
export function takeEnvironment(live: Record<string, string | undefined>): Record<string, string | undefined> {
  const snapshot = { ...live };
  for (const name of SECRET_VARIABLES) delete live[name];
  return snapshot;
}

/** NAME's value, inline or from the file NAME_FILE names (a Docker secret), trimmed; a problem is noted, never the value. */
function readInlineOrFile(env: Env, name: string, readFile: (path: string) => string, problems: string[]): { text: string; source: string } | undefined {
  const inline = env[name]?.trim() || undefined;
  const file = env[`${name}_FILE`]?.trim() || undefined;
  if (inline && file) {
    problems.push(`${name} and ${name}_FILE are both set; set only one`);
    return undefined;
  }
  if (!file) return inline === undefined ? undefined : { text: inline, source: name };
  try {
    return { text: readFile(file).trim(), source: `${name}_FILE` };
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? "unreadable";
    problems.push(`${name}_FILE names a file that cannot be read (${reason}): ${file}`);
    return undefined;
  }
}

function readKey(env: Env, name: string, readFile: (path: string) => string, problems: string[]): Uint8Array | undefined {
  const read = readInlineOrFile(env, name, readFile, problems);
  if (!read) return undefined;
  const key = decodeMasterKey(read.text);
  if (!key.ok) {
    problems.push(`${read.source} ${key.problem}; generate one with \`understudy keygen\``);
    return undefined;
  }
  return key.key;
}

/** The PostgreSQL URL, inline or from a file (a Docker secret); a problem never quotes it (it may hold a password). */
function readDatabaseUrl(env: Env, readFile: (path: string) => string, problems: string[]): string | undefined {
  const read = readInlineOrFile(env, "UNDERSTUDY_DATABASE_URL", readFile, problems);
  if (!read) return undefined;
  const { text, source } = read;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    problems.push(`${source} is not a URL; give postgres://user:password@host:5432/database`);
    return undefined;
  }
  if (url.protocol !== "postgres:" && url.protocol !== "postgresql:") {
    problems.push(`${source} must be a postgres:// (or postgresql://) URL; without it Understudy uses its SQLite file (UNDERSTUDY_DB)`);
    return undefined;
  }
  if (!url.hostname && !url.searchParams.get("host")) {
    problems.push(`${source} names no host; give postgres://user:password@host:5432/database`);
    return undefined;
  }
  return text;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}
