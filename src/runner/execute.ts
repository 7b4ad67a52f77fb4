import { AsyncLocalStorage } from "node:async_hooks";
import * as util from "node:util";
import { createLazyBrowser, type BrowserOptions } from "../browser/browser";
import type { CapturedArtifact } from "../browser/capture";
import { handlerInput, type WorkflowContext, type WorkflowDefinition } from "../workflows/define";
import { LogRedactionBuffer, Redactor, type Secret } from "./redactor";

export type LogLevel = "info" | "warn" | "error";

export type FailureClass = "timeout" | "cancelled" | "interrupted" | "error";

/** Why a run was stopped from outside; decides how it ends. */
export type StopReason = "cancelled" | "interrupted";

export interface ExecuteOptions {
  definition: WorkflowDefinition;
  /** The params, checked against the workflow's input schema before the handler runs. */
  params: Record<string, unknown>;
  /** Injected values by declared name; undefined: the input gets no `credentials` key. */
  credentials: Record<string, string> | undefined;
  /** Every value to keep out of logs, errors and the result (injected ones, and any other). */
  secrets: Secret[];
  session: string;
  timeoutMs: number;
  /** How long a handler that ignores its abort signal gets before the run ends anyway. */
  graceMs: number;
  /** The same when the stop is a shutdown's ("interrupted"); default graceMs. */
  interruptGraceMs?: number;
  maxResultBytes: number;
  browser: BrowserOptions;
  /** Aborted from outside (cancel, shutdown); the reason is a StopReason. */
  stop?: AbortSignal;
  /** Receives each log line, already redacted; heldMs is how long redaction held it (its timestamp is that much earlier). */
  log(level: LogLevel, message: string, heldMs?: number): void;
  /** Called when the handler starts (after input validation), for start-delay measurements. */
  onHandlerStart?(): void;
  /** A refreshing profile's job: a completed outcome carries the context's storageState (when a browser was opened). */
  captureState?: boolean;
}

export type ExecuteOutcome = (
  | { status: "completed"; result: unknown; /** With captureState: the browser's state at the end, never logged. */ storageState?: unknown }
  | { status: "failed" | "cancelled"; failureClass: FailureClass; error: string; mappedStack: string | null }
) & {
  /** What the job's browser left (screenshots, trace), when it had one. */
  artifacts?: CapturedArtifact[];
};

// console.* inside a handler belongs to that handler's job: the active job is
// found through async context, so concurrent jobs never mix their lines.
const activeJob = new AsyncLocalStorage<(level: LogLevel, message: string) => void>();
let consoleCaptured = false;

function captureConsole() {
  if (consoleCaptured) return;
  consoleCaptured = true;
  const methods: ["log" | "info" | "debug" | "warn" | "error", LogLevel][] = [
    ["log", "info"],
    ["info", "info"],
    ["debug", "info"],
    ["warn", "warn"],
    ["error", "error"],
  ];
  for (const [method, level] of methods) {
    const original = (console[method] as (...args: unknown[]) => void).bind(console);
    (console as unknown as Record<string, unknown>)[method] = (...args: unknown[]) => {
      const sink = activeJob.getStore();
      if (sink) sink(level, util.format(...args));
      else original(...args);
    };
  }
}

/**
 * Runs one workflow handler to an outcome, with no database: the runner and
 * `understudy run` both use it. Whatever the handler does, this returns within
 * timeout + grace; the browser, if one was started, is closed before it does.
 */
export async function executeWorkflow(options: ExecuteOptions): Promise<ExecuteOutcome> {
  let artifacts: CapturedArtifact[] = [];
  const outcome = await run(options, (taken) => (artifacts = taken));
  return artifacts.length > 0 ? { ...outcome, artifacts } : outcome;
}

async function run(options: ExecuteOptions, keep: (artifacts: CapturedArtifact[]) => void): Promise<ExecuteOutcome> {
  captureConsole();
  let outcome: ExecuteOutcome | undefined;
  const redactor = new Redactor(options.secrets);
  const buffer = new LogRedactionBuffer(redactor, (level, message, heldMs) => options.log(level, message, heldMs));
  const write = (level: LogLevel, message: string) => buffer.push(level, message);
  const abort = new AbortController();
  const browser = createLazyBrowser(options.browser, abort.signal);

  let stoppedBy: "timeout" | StopReason | undefined;
  const stopWith = (reason: "timeout" | StopReason) => {
    if (stoppedBy) return;
    stoppedBy = reason;
    abort.abort(reason);
  };
  const onStop = () => stopWith((options.stop?.reason as StopReason) === "interrupted" ? "interrupted" : "cancelled");
  if (options.stop?.aborted) onStop();
  options.stop?.addEventListener("abort", onStop, { once: true });
  const timer = setTimeout(() => stopWith("timeout"), options.timeoutMs);
  let graceTimer: ReturnType<typeof setTimeout> | undefined;

  const fail = failureRedactedBy(redactor);

  try {
    if (abort.signal.aborted) return (outcome = stoppedOutcome(stoppedBy!, options.timeoutMs, fail));

    const checked = handlerInput(options.definition, options.params, options.credentials);
    if (!checked.ok) return (outcome = fail("error", checked.error));
    const { input } = checked;

    const ctx: WorkflowContext = {
      get page() {
        return browser.page;
      },
      session: options.session,
      signal: abort.signal,
      log: {
        info: (...args) => write("info", util.format(...args)),
        warn: (...args) => write("warn", util.format(...args)),
        error: (...args) => write("error", util.format(...args)),
      },
    };

    options.onHandlerStart?.();
    const handlerRun = activeJob.run(write, () => Promise.resolve().then(() => options.definition.handler(ctx, input)));
    // The handler is raced against the abort signal plus the grace period: a
    // handler that ignores its signal is left behind, and the run still ends.
    const stopped = new Promise<"stopped">((resolve) => {
      const grace = () => (stoppedBy === "interrupted" ? (options.interruptGraceMs ?? options.graceMs) : options.graceMs);
      abort.signal.addEventListener("abort", () => (graceTimer = setTimeout(() => resolve("stopped"), grace())), { once: true });
    });
    let settled: { ok: true; value: unknown } | { ok: false; error: unknown } | "stopped";
    settled = await Promise.race([
      handlerRun.then(
        (value) => ({ ok: true as const, value }),
        (error) => ({ ok: false as const, error }),
      ),
      stopped,
    ]);
    if (stoppedBy) return (outcome = stoppedOutcome(stoppedBy, options.timeoutMs, fail));
    if (settled === "stopped") return (outcome = stoppedOutcome("cancelled", options.timeoutMs, fail));
    if (!settled.ok) {
      const error = settled.error;
      if (error instanceof Error) return (outcome = fail("error", error.message || error.name, error.stack ?? null));
      return (outcome = fail("error", `The handler threw a non-error value: ${safeString(error)}`));
    }
    outcome = finishResult(settled.value, options, redactor, fail);
    if (outcome.status === "completed" && options.captureState && browser.started) {
      try {
        outcome.storageState = await browser.storageState();
      } catch {
        write("warn", "The browser's state could not be read at the end of the job, so the browser profile was not refreshed.");
      }
    }
    return outcome;
  } catch (error) {
    // Only our own code runs here (browser start, input parsing); report it as the job's error.
    return (outcome = fail("error", error instanceof Error ? error.message : String(error), error instanceof Error ? (error.stack ?? null) : null));
  } finally {
    clearTimeout(timer);
    options.stop?.removeEventListener("abort", onStop);
    // Closed (and captured) before the "finished" abort, which would close it without a capture.
    const closed = browser.close(outcome === undefined ? undefined : outcome.status === "completed" ? "completed" : "failed");
    if (!abort.signal.aborted) abort.abort("finished");
    clearTimeout(graceTimer);
    keep(await closed.catch(() => []));
    buffer.flush();
  }
}

/** The failed (or cancelled) outcome, its error and stack redacted. */
export function failureRedactedBy(redactor: Redactor) {
  return (failureClass: FailureClass, error: string, stack: string | null = null): ExecuteOutcome => ({
    status: failureClass === "cancelled" ? "cancelled" : "failed",
    failureClass,
    error: redactor.redact(error),
    mappedStack: stack === null ? null : redactor.redact(stack),
  });
}

export function stoppedOutcome(
  reason: "timeout" | StopReason,
  timeoutMs: number,
  fail: (c: FailureClass, e: string) => ExecuteOutcome,
): ExecuteOutcome {
  switch (reason) {
    case "timeout":
      return fail("timeout", `The job timed out after ${Math.round(timeoutMs / 1000)} s (timeout_seconds).`);
    case "cancelled":
      return fail("cancelled", "The job was cancelled.");
    case "interrupted":
      return fail("interrupted", "The server shut down while the job was running.");
  }
}

function finishResult(
  value: unknown,
  options: ExecuteOptions,
  redactor: Redactor,
  fail: (c: FailureClass, e: string) => ExecuteOutcome,
): ExecuteOutcome {
  let json: string | undefined;
  try {
    json = JSON.stringify(value === undefined ? null : value);
  } catch (error) {
    return fail("error", `The handler's return value is not JSON: ${error instanceof Error ? error.message : "cannot serialise"}.`);
  }
  return resultFromJson(json ?? "null", options.maxResultBytes, redactor, fail);
}

/**
 * The outcome for a handler's return value, given as JSON text: refused
 * over the size limit, else redacted like a log line (the job row never
 * holds a secret).
 */
export function resultFromJson(
  json: string,
  maxResultBytes: number,
  redactor: Redactor,
  fail: (c: FailureClass, e: string) => ExecuteOutcome,
): ExecuteOutcome {
  const bytes = Buffer.byteLength(json);
  if (bytes > maxResultBytes) {
    return fail("error", `The handler's return value is ${bytes} bytes of JSON; the limit is ${maxResultBytes} bytes (UNDERSTUDY_MAX_RESULT_BYTES).`);
  }
  const redacted = redactor.redact(json);
  try {
    return { status: "completed", result: JSON.parse(redacted) };
  } catch {
    // Redaction inside a JSON string keeps it valid; anything else is a worker that sent bad JSON.
    return fail("error", "The handler's return value could not be read as JSON.");
  }
}

function safeString(value: unknown): string {
  try {
    return typeof value === "string" ? value : JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}
