import type { BrowserOptions } from "../browser/browser";
import type { AuthProfile, WorkflowDefinition } from "../workflows/define";
import { discoverDeployment, loadDeployedWorkflow } from "../worker/deployed-code";
import type { DiscoveredWorkflow } from "../worker/protocol";
import { registerPlaywrightModules } from "../workflows/load";
import { executeWorkflow, type ExecuteOutcome, type LogLevel } from "./execute";
import type { Secret } from "./redactor";

/** A workflow resolved for one job: the code to run and what it declares. */
export type RunnableWorkflow =
  | {
      kind: "file";
      name: string;
      credentials: readonly string[];
      startUrl: string | undefined;
      viewport: { width: number; height: number } | undefined;
      authProfile: AuthProfile | undefined;
      /** The workflow file, absolute. */
      path: string;
      /** Loaded by the server (operator code), for the in-process mode and the input schema. */
      definition: WorkflowDefinition;
    }
  | {
      kind: "deployment";
      name: string;
      credentials: readonly string[];
      startUrl: string | undefined;
      viewport: { width: number; height: number } | undefined;
      authProfile: AuthProfile | undefined;
      deploymentId: string;
      /** The deployment's folder on this instance (unpacked on first use: RunnerDeps.materialiseDeployment) and its entry module, relative to it. */
      dir: string;
      entry: string;
    };

/** Everything needed to run one claimed job, its credentials already decrypted. */
export interface JobRun {
  jobId: string;
  tenantId: string;
  workflow: RunnableWorkflow;
  /** Without injected credentials (for a workflow that declares nothing, with the caller's `credentials` key as given). */
  params: Record<string, unknown>;
  credentials: Record<string, string> | undefined;
  /** Every value to keep out of the log, the error and the result. */
  secrets: Secret[];
  timeoutMs: number;
  /** After a cancel or timeout, how long a handler that ignores its signal gets before its job ends anyway. */
  graceMs: number;
  /** The same after a shutdown told it to stop (shorter: it fits inside the shutdown grace). */
  interruptGraceMs: number;
  maxResultBytes: number;
  browser: BrowserOptions;
  /** Aborted from outside (cancel, shutdown); the reason is a StopReason. */
  stop: AbortSignal;
  /** Receives each log line, already redacted; heldMs is how long redaction held it (its timestamp is that much earlier). */
  log(level: LogLevel, message: string, heldMs?: number): void;
  onHandlerStart?(): void;
  /** A refreshing profile's job: the completed outcome carries the browser's state at the end. */
  captureState?: boolean;
}

/** Runs jobs: in worker processes (the default), or in the server's own process. */
export interface JobExecutor {
  execute(run: JobRun): Promise<ExecuteOutcome>;
  /** Loads a deployment's entry module (as its tenant's code) and lists its workflows. */
  discover(tenantId: string, dir: string, entry: string, timeoutMs: number): Promise<DiscoveredWorkflow[]>;
  shutdown(): Promise<void>;
}

/**
 * UNDERSTUDY_WORKFLOW_ISOLATION=none: handlers run inside the server
 * process, for a single trusted operator (no tenant code). A handler there
 * can read anything the server can, the master key included.
 */
export class InProcessExecutor implements JobExecutor {
  async execute(run: JobRun): Promise<ExecuteOutcome> {
    const definition = run.workflow.kind === "file" ? run.workflow.definition : await deployedDefinition(run.workflow);
    return executeWorkflow({
      definition,
      params: run.params,
      credentials: run.credentials,
      secrets: run.secrets,
      session: run.jobId,
      timeoutMs: run.timeoutMs,
      graceMs: run.graceMs,
      interruptGraceMs: run.interruptGraceMs,
      maxResultBytes: run.maxResultBytes,
      browser: run.browser,
      stop: run.stop,
      log: run.log,
      onHandlerStart: run.onHandlerStart,
      captureState: run.captureState,
    });
  }

  async discover(_tenantId: string, dir: string, entry: string, timeoutMs: number): Promise<DiscoveredWorkflow[]> {
    registerPlaywrightModules();
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      return await Promise.race([
        discoverDeployment(dir, entry),
        new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`Loading the entry point did not finish within ${Math.round(timeoutMs / 1000)} s.`)), timeoutMs))),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  async shutdown(): Promise<void> {}
}

/** A deployed libretto workflow seen as a definition: its own run() checks the input and merges the credentials. */
async function deployedDefinition(workflow: Extract<RunnableWorkflow, { kind: "deployment" }>): Promise<WorkflowDefinition> {
  registerPlaywrightModules();
  const exported = await loadDeployedWorkflow(workflow.dir, workflow.entry, workflow.name);
  return {
    [Symbol.for("understudy.workflow")]: true,
    name: workflow.name,
    credentials: workflow.credentials,
    input: undefined,
    output: undefined,
    startUrl: workflow.startUrl,
    viewport: workflow.viewport,
    authProfile: workflow.authProfile,
    handler: (ctx: { session: string; page: unknown }, input: unknown) => exported.run({ session: ctx.session, get page() { return ctx.page; } }, input),
  } as unknown as WorkflowDefinition;
}
