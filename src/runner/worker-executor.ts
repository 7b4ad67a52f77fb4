import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { findChromium } from "../browser/browser";
import type { CapturedArtifact } from "../browser/capture";
import type { Logger } from "../log";
import { selfCommand } from "../runtime";
import { WORKER_SUBCOMMAND, type DiscoveredWorkflow, type JobOutcomeMessage, type WorkerKind } from "../worker/protocol";
import { failureRedactedBy, resultFromJson, stoppedOutcome, type ExecuteOutcome, type FailureClass, type StopReason } from "./execute";
import type { JobExecutor, JobRun, RunnableWorkflow } from "./executor";
import { LogRedactionBuffer, type Redactor } from "./redactor";
import type { WorkerSandbox } from "./sandbox";
import type { WorkerPool } from "./worker-pool";
import { DiscoverTimeoutError, WorkerProcess } from "./worker-process";

/**
 * Runs each job's handler in a worker process of its tenant (see
 * src/worker/main.ts and DESIGN.md "Trust model"). The server keeps
 * everything that needs the database or the vault: the worker gets the
 * job's params and the values of its declared credentials, and everything it
 * says (log lines, stdout, stderr, the result, the error) is redacted here.
 *
 * Stopping (timeout, cancel, shutdown) asks the worker first; a worker that
 * has not ended the job within the grace period is killed with its whole
 * process tree, browser included, and the job still ends.
 */
export class WorkerExecutor implements JobExecutor {
  constructor(private readonly pool: WorkerPool) {}

  async execute(run: JobRun): Promise<ExecuteOutcome> {
    let worker: WorkerProcess;
    try {
      worker = await this.pool.acquire(run.tenantId, kindOf(run.workflow));
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      return { status: "failed", failureClass: "error", error: `Understudy could not start a worker process for this job. ${reason}`, mappedStack: null };
    }
    // Late output of an earlier job of this worker must not leak its values either.
    const redactor = worker.redactorWith(run.secrets);
    const fail = failureRedactedBy(redactor);
    // One buffer, so the job's lines keep their order; each stream is joined
    // on its own, so a value split across writes of one stream is still caught.
    const writes = new LogRedactionBuffer(redactor, run.log);
    const chromiumPath = findChromium(run.browser.chromiumPath);

    const capture = run.browser.capture;
    // From an untrusted worker: one of each kind, checked against the limit, its type decided here.
    const artifacts: CapturedArtifact[] = [];
    const onArtifact = (kind: "screenshot" | "trace", sizeBytes: number, data: string | undefined) => {
      if (!capture || artifacts.some((a) => a.kind === kind)) return;
      if (kind === "trace" && !capture.trace) return;
      const bytes = data === undefined ? undefined : new Uint8Array(Buffer.from(data, "base64"));
      const contentType = kind === "screenshot" ? "image/png" : "application/zip";
      if (bytes && bytes.byteLength > capture.maxBytes) artifacts.push({ kind, contentType, bytes: undefined, sizeBytes: bytes.byteLength });
      else artifacts.push({ kind, contentType, bytes, sizeBytes: bytes?.byteLength ?? sizeBytes });
    };
    return new Promise<ExecuteOutcome>((resolve) => {
      let stoppedBy: "timeout" | StopReason | undefined;
      let settled = false;
      let graceTimer: ReturnType<typeof setTimeout> | undefined;
      const finish = (outcome: ExecuteOutcome, reusable: boolean) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        clearTimeout(graceTimer);
        run.stop.removeEventListener("abort", onAbort);
        writes.flush();
        resolve(artifacts.length > 0 ? { ...outcome, artifacts } : outcome);
        void this.pool.release(worker, reusable);
      };
      const stopped = () => stoppedOutcome(stoppedBy!, run.timeoutMs, fail);
      const stop = (reason: "timeout" | StopReason) => {
        if (stoppedBy || settled) return;
        stoppedBy = reason;
        worker.stop(run.jobId, reason);
        graceTimer = setTimeout(() => {
          // It ignored the signal (a busy loop, a handler that never returns): kill it, browser included.
          void worker.kill();
          finish(stopped(), false);
        }, reason === "interrupted" ? run.interruptGraceMs : run.graceMs);
      };
      const timer = setTimeout(() => stop("timeout"), run.timeoutMs);
      const onAbort = () => stop((run.stop.reason as StopReason) === "interrupted" ? "interrupted" : "cancelled");
      if (run.stop.aborted) onAbort();
      else run.stop.addEventListener("abort", onAbort, { once: true });

      worker.run(
        {
          type: "run",
          jobId: run.jobId,
          code: codeOf(run.workflow),
          params: run.params,
          credentials: run.credentials,
          browser: {
            headless: run.browser.headless,
            startUrl: run.browser.startUrl,
            viewport: run.browser.viewport,
            chromiumPath,
            configuredChromiumPath: run.browser.chromiumPath,
            capture,
            storageState: run.browser.storageState,
            captureState: run.captureState,
          },
        },
        {
          started: () => run.onHandlerStart?.(),
          log: (level, message) => writes.push(level, message, "log"),
          output: (stream, line) => writes.push(stream === "stdout" ? "info" : "error", line, stream),
          artifact: onArtifact,
          ended: (outcome) => finish(stoppedBy ? stopped() : outcomeOf(outcome, run.maxResultBytes, redactor, fail), true),
          lost: (reason) =>
            finish(
              stoppedBy
                ? stopped()
                : fail("error", `The worker process running this job stopped before the job ended (${reason}). The next job gets a new worker.`),
              false,
            ),
        },
      );
    });
  }

  /**
   * Loads a deployment's entry module in a worker of its tenant. The worker
   * then stays warm for the tenant's first job; one that timed out or failed
   * to answer is stopped.
   */
  async discover(tenantId: string, dir: string, entry: string, timeoutMs: number): Promise<DiscoveredWorkflow[]> {
    const worker = await this.pool.acquire(tenantId, "deployments");
    let reusable = false;
    try {
      const found = await worker.discover(dir, entry, timeoutMs);
      reusable = true;
      return found;
    } catch (error) {
      // A load error (an exception in the code) leaves a usable worker; a timeout does not.
      reusable = !worker.dead && !(error instanceof DiscoverTimeoutError);
      // A warm worker may have run the tenant's jobs: code loaded now could
      // put a value it kept from one into its error, which the build error
      // and the server log would show.
      throw new Error(worker.redactorWith([]).redact(error instanceof Error ? error.message : String(error)));
    } finally {
      void this.pool.release(worker, reusable);
    }
  }

  async shutdown(): Promise<void> {
    await this.pool.shutdown();
  }
}

function kindOf(workflow: RunnableWorkflow): WorkerKind {
  return workflow.kind === "file" ? "files" : "deployments";
}

function codeOf(workflow: RunnableWorkflow) {
  return workflow.kind === "file"
    ? { kind: "file" as const, path: workflow.path, name: workflow.name }
    : { kind: "deployment" as const, dir: workflow.dir, entry: workflow.entry, name: workflow.name };
}

function outcomeOf(
  outcome: JobOutcomeMessage,
  maxResultBytes: number,
  redactor: Redactor,
  fail: (c: FailureClass, e: string, stack?: string | null) => ExecuteOutcome,
): ExecuteOutcome {
  if (outcome.status === "completed") {
    const ended = resultFromJson(outcome.resultJson, maxResultBytes, redactor, fail);
    if (ended.status === "completed" && outcome.storageStateJson !== undefined) {
      try {
        ended.storageState = JSON.parse(outcome.storageStateJson);
      } catch {
        // Not JSON: the profile is not refreshed (the runner logs that no state came back).
      }
    }
    return ended;
  }
  return fail("error", outcome.error, outcome.stack);
}

export interface WorkerStarterOptions {
  sandbox: WorkerSandbox;
  /** Where each worker's private directory is made (0700, removed when it exits). */
  workersRoot: string;
  /** What a worker of each kind reads: the workflows directory, or the tenant's deployments folder. */
  readOnlyPaths(tenantId: string, kind: WorkerKind): string[];
  log: Logger;
}

/** Starts worker processes: the same program, with an environment built from nothing, in the sandbox. */
export function workerStarter(options: WorkerStarterOptions) {
  return async (tenantId: string, kind: WorkerKind, generation: number): Promise<WorkerProcess> => {
    const tmpDir = mkdtempSync(join(options.workersRoot, "w-"));
    chmodSync(tmpDir, 0o700);
    const argv = options.sandbox.wrap(selfCommand([WORKER_SUBCOMMAND, kind]), { tmpDir, readOnly: options.readOnlyPaths(tenantId, kind) });
    try {
      return await WorkerProcess.start({
        tenantId,
        kind,
        generation,
        argv,
        env: workerEnvironment(tmpDir),
        cwd: tmpDir,
        onExit: () => rmSync(tmpDir, { recursive: true, force: true }),
      });
    } catch (error) {
      rmSync(tmpDir, { recursive: true, force: true });
      options.log.log("error", "a worker process could not start", { tenant_id: tenantId, kind, error: error instanceof Error ? error.message : "error" });
      throw error;
    }
  };
}

/**
 * A worker's whole environment: nothing of the server's (no key, no
 * UNDERSTUDY_* variable, nothing an operator exported). LIBRETTO_HOSTED_RUNTIME
 * tells libretto's run() it is hosted, so it takes credentials from the input
 * only, never from LIBRETTO_CLOUD_* variables.
 */
export function workerEnvironment(tmpDir: string): Record<string, string> {
  return {
    PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    HOME: tmpDir,
    TMPDIR: tmpDir,
    LANG: "C.UTF-8",
    LIBRETTO_HOSTED_RUNTIME: "1",
  };
}
