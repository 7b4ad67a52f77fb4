import { z } from "zod";
import { storageState } from "../profiles/state";

/**
 * The messages between the server and a worker process, one JSON object per
 * line: server -> worker on the worker's stdin, worker -> server on its fd 3.
 * What the code writes with process.stdout/stderr.write comes as `output`
 * messages, in order with the job's end; what reaches fd 1 and 2 otherwise (a
 * child process, a raw fd write) is read from the worker's stdout and stderr.
 * The server redacts both and keeps them in the job log.
 *
 * Both sides import this file and parse what they receive with it. The
 * server treats every worker message as untrusted input (the worker runs
 * tenant code): a message that does not parse ends the worker.
 */

export const WORKER_SUBCOMMAND = "__worker";

/** Which code a worker serves: the operator's workflow files, or one tenant's deployments. Never both (see worker/main.ts). */
export const workerKind = z.enum(["files", "deployments"]);
export type WorkerKind = z.infer<typeof workerKind>;

const viewport = z.object({ width: z.number().int().positive(), height: z.number().int().positive() });

/** What the job keeps when it ends (src/browser/capture.ts). */
export const captureRequest = z.object({
  screenshots: z.enum(["always", "failure", "never"]),
  trace: z.boolean(),
  maskValues: z.array(z.string()),
  maxBytes: z.number().int().positive(),
});

export const browserRequest = z.object({
  headless: z.boolean(),
  capture: captureRequest.optional(),
  startUrl: z.string().optional(),
  viewport: viewport.optional(),
  /** The Chromium executable the server found, or undefined when none was found. */
  chromiumPath: z.string().optional(),
  /** UNDERSTUDY_CHROMIUM_PATH as configured, to say what was wrong when chromiumPath is missing. */
  configuredChromiumPath: z.string().optional(),
  /** A browser profile's state, loaded into the job's fresh context (sent only to the tenant's own worker). */
  storageState: storageState.optional(),
  /** A refreshing profile: a completed outcome carries the context's state at the end. */
  captureState: z.boolean().optional(),
});
export type BrowserRequest = z.infer<typeof browserRequest>;

export const workflowCode = z.discriminatedUnion("kind", [
  /** A workflow file of UNDERSTUDY_WORKFLOWS_DIR: an understudy/libretto `workflow()` definition. */
  z.object({ kind: z.literal("file"), path: z.string(), name: z.string() }),
  /** A deployed workflow: a branded libretto export of the deployment's entry module. */
  z.object({ kind: z.literal("deployment"), dir: z.string(), entry: z.string(), name: z.string() }),
]);
export type WorkflowCode = z.infer<typeof workflowCode>;

export const runJob = z.object({
  type: z.literal("run"),
  jobId: z.string(),
  code: workflowCode,
  /** The params, without injected credentials (a file workflow checks them against its input schema first). */
  params: z.record(z.string(), z.unknown()),
  /** Injected values by declared name; absent: the input gets no `credentials` key. */
  credentials: z.record(z.string(), z.string()).optional(),
  browser: browserRequest,
});
export type RunJob = z.infer<typeof runJob>;

export const stopReason = z.enum(["timeout", "cancelled", "interrupted"]);
export type StopReasonMessage = z.infer<typeof stopReason>;

export const serverMessage = z.discriminatedUnion("type", [
  runJob,
  /** Fire the job's abort signal and close its browser context. */
  z.object({ type: z.literal("stop"), jobId: z.string(), reason: stopReason }),
  /** Load a deployment's entry module and list its workflows. */
  z.object({ type: z.literal("discover"), requestId: z.string(), dir: z.string(), entry: z.string() }),
]);
export type ServerMessage = z.infer<typeof serverMessage>;

export const logLevel = z.enum(["info", "warn", "error"]);

export const discoveredWorkflow = z.object({
  name: z.string().min(1).max(256),
  credentialNames: z.array(z.string().max(256)).max(1000),
  startUrl: z.string().max(4096).optional(),
  viewport: viewport.optional(),
  authProfileName: z.string().max(256).optional(),
  authProfileRefresh: z.boolean().optional(),
});
export type DiscoveredWorkflow = z.infer<typeof discoveredWorkflow>;

export const jobOutcome = z.discriminatedUnion("status", [
  /** The handler's return value as JSON text (the server checks its size and redacts it). */
  z.object({ status: z.literal("completed"), resultJson: z.string(), storageStateJson: z.string().optional() }),
  z.object({ status: z.literal("failed"), error: z.string(), stack: z.string().nullable() }),
]);
export type JobOutcomeMessage = z.infer<typeof jobOutcome>;

export const workerMessage = z.discriminatedUnion("type", [
  /** Sent once at start: the worker is listening. */
  z.object({ type: z.literal("ready") }),
  /** The handler was called (after its input was checked). */
  z.object({ type: z.literal("started"), jobId: z.string() }),
  z.object({ type: z.literal("log"), jobId: z.string(), level: logLevel, message: z.string() }),
  /** Text the code passed to process.stdout/stderr.write during the job, raw (not split into lines). */
  z.object({ type: z.literal("output"), jobId: z.string(), stream: z.enum(["stdout", "stderr"]), text: z.string() }),
  /** Sent before "ended": a screenshot or trace of the job's page, base64 (absent when over capture.maxBytes). */
  z.object({
    type: z.literal("artifact"),
    jobId: z.string(),
    kind: z.enum(["screenshot", "trace"]),
    sizeBytes: z.number().int().nonnegative(),
    data: z.string().max(32 * 1024 * 1024).optional(),
  }),
  z.object({ type: z.literal("ended"), jobId: z.string(), outcome: jobOutcome }),
  /** The last job's browser context is closed: the worker can take the next job. */
  z.object({ type: z.literal("idle") }),
  z.object({ type: z.literal("discovered"), requestId: z.string(), workflows: z.array(discoveredWorkflow).max(1000) }),
  z.object({ type: z.literal("discover-failed"), requestId: z.string(), error: z.string() }),
]);
export type WorkerMessage = z.infer<typeof workerMessage>;

/** Encodes one message as a protocol line. */
export const encodeMessage = (message: ServerMessage | WorkerMessage): string => `${JSON.stringify(message)}\n`;

/**
 * Splits a byte stream into lines; a line longer than `maxLineBytes` is
 * reported through onOverflow instead of being buffered without end (a
 * worker is untrusted: it must not make the server hold unbounded memory).
 */
export class LineSplitter {
  #pending = "";
  constructor(
    private readonly maxLineBytes: number,
    private readonly onLine: (line: string) => void,
    private readonly onOverflow: (partial: string) => void,
  ) {}

  push(chunk: string): void {
    let text = this.#pending + chunk;
    let newline = text.indexOf("\n");
    while (newline !== -1) {
      this.onLine(text.slice(0, newline));
      text = text.slice(newline + 1);
      newline = text.indexOf("\n");
    }
    if (text.length > this.maxLineBytes) {
      this.onOverflow(text);
      text = "";
    }
    this.#pending = text;
  }

  /** Whatever is left without a final newline. */
  end(): void {
    if (this.#pending !== "") this.onLine(this.#pending);
    this.#pending = "";
  }
}
