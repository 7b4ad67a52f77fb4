/**
 * The worker process: runs workflow handlers for one tenant, one job at a
 * time, on behalf of the server (src/runner/ is the other side).
 *
 * What it is given: a job's code reference, params, the values of the
 * credentials the workflow declares, and browser options, over its stdin.
 * What it is not given: the master key, the database, any other tenant's
 * data, any `UNDERSTUDY_*` variable. It imports nothing that could open the
 * store or the vault (test/worker/imports.test.ts checks).
 *
 * Everything it says goes to fd 3 as protocol messages, the code's console
 * and process.stdout/stderr writes included. What still reaches fd 1 and 2 is
 * read by the server too. The server redacts it all.
 */
import { writeSync } from "node:fs";
import { format } from "node:util";
import { createLazyPage } from "../browser/browser";
import type { CapturedArtifact } from "../browser/capture";
import { WarmBrowser } from "../browser/warm";
import { handlerInput, type WorkflowDefinition } from "../workflows/define";
import { loadWorkflowFile, registerPlaywrightModules, registerWorkflowModules } from "../workflows/load";
import { discoverDeployment, loadDeployedWorkflow } from "./deployed-code";
import { hardenWorkerProcess } from "../prctl";
import {
  encodeMessage,
  LineSplitter,
  serverMessage,
  type JobOutcomeMessage,
  type RunJob,
  type ServerMessage,
  type WorkerKind,
  type WorkerMessage,
} from "./protocol";

const PROTOCOL_FD = 3;
/** Characters of written output per protocol message. */
const OUTPUT_PIECE = 64 * 1024;
interface ActiveJob {
  id: string;
  abort: AbortController;
}

export async function runWorker(kind: WorkerKind): Promise<number> {
  await hardenWorkerProcess();
  // Deployed code brings its own libretto and zod: only the operator's
  // workflow files get ours. Both get Playwright, which Understudy carries.
  if (kind === "files") registerWorkflowModules();
  registerPlaywrightModules();

  // Each write is a system call, the bulk of a short job's cost: "started"
  // waits for the next message (or the next turn of the event loop), so a
  // quick job's started, ended and idle go in one write.
  let unsent = "";
  let flushSoon = false;
  const flush = () => {
    if (unsent === "") return;
    const text = unsent;
    unsent = "";
    writeSync(PROTOCOL_FD, text);
  };
  const send = (message: WorkerMessage, when: "now" | "soon" | "with-next" = "now") => {
    unsent += encodeMessage(message);
    if (when === "now") return flush();
    if (when === "soon" && !flushSoon) {
      flushSoon = true;
      setImmediate(() => {
        flushSoon = false;
        flush();
      });
    }
  };
  const browser = new WarmBrowser();
  let active: ActiveJob | undefined;
  let chain: Promise<void> = Promise.resolve();

  // console.* belongs to the running job, with its level; between jobs it goes nowhere.
  for (const [method, level] of [
    ["log", "info"],
    ["info", "info"],
    ["debug", "info"],
    ["warn", "warn"],
    ["error", "error"],
  ] as const) {
    (console as unknown as Record<string, unknown>)[method] = (...args: unknown[]) => {
      if (active) send({ type: "log", jobId: active.id, level, message: format(...args) });
    };
  }
  // process.stdout/stderr.write belong to the running job too, and go over
  // fd 3 like console.*: the server reads the stdout and stderr pipes apart
  // from fd 3, with no order between them, so what a handler wrote just before
  // it returned used to reach the server after the job's "ended" and was
  // dropped, or (a line without its newline) put in the next job's log.
  // Writes that bypass these (a child process, fs.writeSync(1)) still go
  // through the pipes.
  for (const stream of ["stdout", "stderr"] as const) {
    const target = process[stream];
    target.write = ((chunk: string | Uint8Array, encoding?: BufferEncoding | ((error?: Error | null) => void), callback?: (error?: Error | null) => void) => {
      const done = typeof encoding === "function" ? encoding : callback;
      if (active) {
        const text = typeof chunk === "string" ? (typeof encoding === "string" ? Buffer.from(chunk, encoding).toString("utf8") : chunk) : Buffer.from(chunk).toString("utf8");
        // In pieces: one message must stay far below the server's longest line.
        for (let i = 0; i < text.length; i += OUTPUT_PIECE) send({ type: "output", jobId: active.id, stream, text: text.slice(i, i + OUTPUT_PIECE) });
      }
      if (done) queueMicrotask(() => done(null));
      return true;
    }) as typeof target.write;
  }
  // A stray rejection or throw in tenant code must not end the worker (and
  // with it a job that may still finish); it is the running job's log line.
  const report = (error: unknown) => {
    if (active) send({ type: "log", jobId: active.id, level: "error", message: `Unhandled: ${describe(error)}` });
  };
  process.on("unhandledRejection", report);
  process.on("uncaughtException", report);

  async function handle(message: ServerMessage): Promise<void> {
    switch (message.type) {
      case "run":
        chain = chain.then(() => runJob(message));
        return;
      case "stop":
        if (active?.id === message.jobId) active.abort.abort(message.reason);
        return;
      case "discover":
        chain = chain.then(async () => {
          try {
            const workflows = await discoverDeployment(message.dir, message.entry);
            send({ type: "discovered", requestId: message.requestId, workflows });
          } catch (error) {
            send({ type: "discover-failed", requestId: message.requestId, error: describe(error) });
          }
        });
        return;
    }
  }

  async function runJob(job: RunJob): Promise<void> {
    const abort = new AbortController();
    active = { id: job.jobId, abort };
    const lazy = createLazyPage(() => browser.openPage(job.browser), job.browser);
    // What the page showed is kept once, at the first of: the stop, the
    // handler's end. It is sent at once: a handler that ignores the stop is
    // killed at the end of its grace, and the server keeps what came before.
    let captured: Promise<void> | undefined;
    const capture = (outcome: "completed" | "failed") =>
      (captured ??= (lazy.opened ? browser.captureJob(job.browser.capture, outcome) : Promise.resolve([] as CapturedArtifact[])).then((artifacts) => {
        for (const artifact of artifacts) {
          send({
            type: "artifact",
            jobId: job.jobId,
            kind: artifact.kind,
            sizeBytes: artifact.sizeBytes,
            data: artifact.bytes ? Buffer.from(artifact.bytes).toString("base64") : undefined,
          });
        }
      }));
    // Closing the job's context makes a pending page call reject at once
    // (after its screenshot; none at a shutdown, whose time is counted).
    abort.signal.addEventListener(
      "abort",
      () => {
        if (abort.signal.reason === "interrupted") captured ??= Promise.resolve();
        void capture("failed").finally(() => browser.releaseJob());
      },
      { once: true },
    );
    let outcome: JobOutcomeMessage;
    try {
      outcome = await callHandler(job, lazy.page, abort.signal, () => send({ type: "started", jobId: job.jobId }, "soon"));
      if (outcome.status === "completed" && job.browser.captureState && lazy.opened && !abort.signal.aborted) {
        // A refreshing profile: what the site set during the job goes back to the server (never to the log).
        const state = await browser.storageState().catch(() => undefined);
        if (state !== undefined) outcome = { ...outcome, storageStateJson: JSON.stringify(state) };
      }
    } catch (error) {
      outcome = { status: "failed", error: describe(error), stack: error instanceof Error ? (error.stack ?? null) : null };
    }
    await capture(outcome.status === "completed" ? "completed" : "failed");
    active = undefined;
    if (browser.holdsJob) {
      send({ type: "ended", jobId: job.jobId, outcome });
      await browser.releaseJob();
    } else {
      // Nothing to close: idle goes in the same write.
      send({ type: "ended", jobId: job.jobId, outcome }, "with-next");
    }
    send({ type: "idle" });
  }

  const lines = new LineSplitter(
    64 * 1024 * 1024,
    (line) => {
      if (line.trim() === "") return;
      let json: unknown;
      try {
        json = JSON.parse(line);
      } catch {
        return; // only the server writes here; a line it did not write is ignored
      }
      const parsed = serverMessage.safeParse(json);
      if (parsed.success) void handle(parsed.data);
    },
    () => {},
  );
  process.stdin.setEncoding("utf8");
  process.stdin.on("data", (chunk: string) => lines.push(chunk));
  const ended = new Promise<void>((resolve) => process.stdin.on("end", resolve));
  send({ type: "ready" });
  // The server closes our stdin when it no longer needs us (or when it died).
  await ended;
  await browser.close();
  return 0;
}

async function callHandler(job: RunJob, page: unknown, signal: AbortSignal, started: () => void): Promise<JobOutcomeMessage> {
  let value: unknown;
  if (job.code.kind === "file") {
    const definition = await loadFileWorkflow(job.code.path, job.code.name);
    const checked = handlerInput(definition, job.params, job.credentials);
    if (!checked.ok) return { status: "failed", error: checked.error, stack: null };
    const { input } = checked;
    const log = (level: "info" | "warn" | "error") => (...args: unknown[]) => console[level](...args);
    const ctx = {
      get page() {
        return page;
      },
      session: job.jobId,
      signal,
      log: { info: log("info"), warn: log("warn"), error: log("error") },
    };
    started();
    value = await definition.handler(ctx as never, input);
  } else {
    const workflow = await loadDeployedWorkflow(job.code.dir, job.code.entry, job.code.name);
    const input = job.credentials ? { ...job.params, credentials: job.credentials } : job.params;
    // libretto's run(ctx, input) strips __libretto, merges the declared
    // credentials and checks the input itself.
    const ctx = {
      get page() {
        return page;
      },
      session: job.jobId,
    };
    started();
    value = await workflow.run(ctx, input);
  }
  let resultJson: string | undefined;
  try {
    resultJson = JSON.stringify(value === undefined ? null : value);
  } catch (error) {
    return { status: "failed", error: `The handler's return value is not JSON: ${error instanceof Error ? error.message : "cannot serialise"}.`, stack: null };
  }
  return { status: "completed", resultJson: resultJson ?? "null" };
}

async function loadFileWorkflow(path: string, name: string): Promise<WorkflowDefinition> {
  const definitions = await loadWorkflowFile(path);
  const found = definitions.find((d) => d.name === name);
  if (!found) throw new Error(`Workflow "${name}" is no longer exported by its file; the server will pick the change up at its next reload.`);
  return found;
}

function describe(error: unknown): string {
  if (error instanceof Error) return error.message || error.name;
  try {
    return `The handler threw a non-error value: ${typeof error === "string" ? error : JSON.stringify(error)}`;
  } catch {
    return "The handler threw a non-error value.";
  }
}
