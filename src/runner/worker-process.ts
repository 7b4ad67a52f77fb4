import { spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { constants } from "node:os";
import type { Readable, Writable } from "node:stream";
import {
  encodeMessage,
  LineSplitter,
  workerMessage,
  type DiscoveredWorkflow,
  type JobOutcomeMessage,
  type RunJob,
  type ServerMessage,
  type StopReasonMessage,
  type WorkerKind,
} from "../worker/protocol";
import { Redactor, type Secret } from "./redactor";

/** What a running job hears from its worker. Everything is raw: the caller redacts. */
export interface JobListener {
  started(): void;
  log(level: "info" | "warn" | "error", message: string): void;
  /** A line the code wrote to stdout or stderr. */
  output(stream: "stdout" | "stderr", line: string): void;
  ended(outcome: JobOutcomeMessage): void;
  /** A screenshot or trace of the job's page, before it ended; data is base64, absent when it was too large. */
  artifact?(kind: "screenshot" | "trace", sizeBytes: number, data: string | undefined): void;
  /** The worker died (or was killed) before the job ended. */
  lost(reason: string): void;
}

export interface WorkerSpawn {
  tenantId: string;
  kind: WorkerKind;
  /** The registry generation of file workflows it was started for (a reload retires older workers). */
  generation: number;
  argv: string[];
  env: Record<string, string>;
  cwd: string;
  /** Called once the process has exited, after its directory can be removed. */
  onExit?(): void;
}

const READY_TIMEOUT_MS = 30_000;
/** Longest protocol line: a result is at most UNDERSTUDY_MAX_RESULT_BYTES, escaped in JSON; more is a broken worker. */
const MAX_MESSAGE_LENGTH = 32 * 1024 * 1024;
/** Longest output line kept whole; longer ones are cut (a job log line, not a file). */
const MAX_OUTPUT_LINE = 64 * 1024;

/**
 * One worker process (src/worker/main.ts) seen from the server: it spawns
 * it, speaks the protocol, attributes its output to the job it is running,
 * and kills it with everything it started.
 *
 * A worker runs one job at a time. It is untrusted: a message that does not
 * parse, or a line that never ends, ends the worker.
 */
export class WorkerProcess {
  readonly id = randomUUID();
  readonly tenantId: string;
  readonly kind: WorkerKind;
  readonly generation: number;
  /** Every value ever handed to this worker, by value (its first name kept): its later output is redacted with all of them. */
  readonly #secrets = new Map<string, Secret>();
  #redactor: Redactor | undefined;
  lastUsedAt = Date.now();
  readonly #child: ChildProcess;
  readonly #exited: Promise<void>;
  #dead: string | undefined;
  #job: { id: string; listener: JobListener } | undefined;
  #idle = true;
  #idleWaiters: (() => void)[] = [];
  readonly #discoveries = new Map<string, { resolve(w: DiscoveredWorkflow[]): void; reject(e: Error): void }>();
  /**
   * What the code wrote with process.stdout/stderr.write, which comes over the
   * protocol in order with the job's end (see worker/main.ts); the pipes carry
   * only what bypasses those.
   */
  readonly #written = { stdout: this.#outputLines("stdout"), stderr: this.#outputLines("stderr") };

  private constructor(spawned: WorkerSpawn, child: ChildProcess) {
    this.tenantId = spawned.tenantId;
    this.kind = spawned.kind;
    this.generation = spawned.generation;
    this.#child = child;
    this.#exited = new Promise((resolve) => {
      child.once("exit", (code, signal) => {
        this.#die(exitReason(code, signal));
        resolve();
        spawned.onExit?.();
      });
    });
  }

  /** Starts a worker and waits for its ready message. */
  static start(spawned: WorkerSpawn): Promise<WorkerProcess> {
    const [command, ...args] = spawned.argv;
    const child = spawn(command!, args, {
      cwd: spawned.cwd,
      env: spawned.env,
      // stdin: messages in; stdout/stderr: what the code prints; fd 3: messages out.
      stdio: ["pipe", "pipe", "pipe", "pipe"],
      // Its own process group, so a kill reaches what it started.
      detached: true,
    });
    const worker = new WorkerProcess(spawned, child);
    return new Promise((resolve, reject) => {
      let settled = false;
      const timer = setTimeout(() => fail(`it did not start within ${READY_TIMEOUT_MS / 1000} s`), READY_TIMEOUT_MS);
      const fail = (reason: string) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        void worker.kill();
        reject(new Error(`A worker process could not start: ${reason}.`));
      };
      child.once("error", (error) => fail(error.message));
      child.once("exit", (code, signal) => fail(exitReason(code, signal)));
      worker.#listen(() => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(worker);
      });
    });
  }

  /**
   * Adds a job's values to those this worker has held, and returns the
   * redactor of all of them. The same values job after job (the usual case)
   * reuse one redactor: a new one is built only when a new value comes.
   */
  redactorWith(secrets: readonly Secret[]): Redactor {
    for (const secret of secrets) {
      if (this.#secrets.has(secret.value)) continue;
      this.#secrets.set(secret.value, secret);
      this.#redactor = undefined;
    }
    return (this.#redactor ??= new Redactor([...this.#secrets.values()]));
  }

  get pid(): number | undefined {
    return this.#child.pid;
  }

  get dead(): boolean {
    return this.#dead !== undefined;
  }

  /** Whether it finished its last job's cleanup and can take another. */
  get idle(): boolean {
    return this.#idle && !this.dead;
  }

  get exited(): Promise<void> {
    return this.#exited;
  }

  run(job: RunJob, listener: JobListener): void {
    if (this.#dead) {
      listener.lost(`The worker process had already stopped (${this.#dead}).`);
      return;
    }
    this.#job = { id: job.jobId, listener };
    this.#idle = false;
    this.#send(job);
  }

  stop(jobId: string, reason: StopReasonMessage): void {
    if (this.#job?.id === jobId) this.#send({ type: "stop", jobId, reason });
  }

  /** Resolves true once the worker says it is idle, false after `ms` or when it dies. */
  waitIdle(ms: number): Promise<boolean> {
    if (this.idle) return Promise.resolve(true);
    if (this.dead) return Promise.resolve(false);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), ms);
      this.#idleWaiters.push(() => {
        clearTimeout(timer);
        resolve(this.idle);
      });
    });
  }

  /** Loads a deployment's entry in this worker and lists its workflows. */
  discover(dir: string, entry: string, timeoutMs: number): Promise<DiscoveredWorkflow[]> {
    const requestId = randomUUID();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#discoveries.delete(requestId);
        reject(new DiscoverTimeoutError(`Loading the entry point did not finish within ${Math.round(timeoutMs / 1000)} s.`));
      }, timeoutMs);
      this.#discoveries.set(requestId, {
        resolve: (w) => (clearTimeout(timer), resolve(w)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      });
      this.#send({ type: "discover", requestId, dir, entry });
    });
  }

  /** Asks the worker to exit (its stdin closes), and kills it if it has not within `graceMs`. */
  async close(graceMs = 3_000): Promise<void> {
    if (this.dead) return this.#exited;
    this.#child.stdin?.end();
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([this.#exited, new Promise((resolve) => (timer = setTimeout(resolve, graceMs)))]);
    clearTimeout(timer);
    if (!this.dead) await this.kill();
  }

  /**
   * SIGKILLs the worker and every process it started (its browser too):
   * its process group, and every descendant found in /proc (Chromium puts
   * itself in a group of its own). Resolves once the worker has exited.
   */
  async kill(): Promise<void> {
    const pid = this.#child.pid;
    if (pid !== undefined && this.#child.exitCode === null && this.#child.signalCode === null) {
      const tree = descendantsOf(pid);
      // Stopped first, so none of them can start another process meanwhile.
      for (const p of [pid, ...tree]) signal(p, "SIGSTOP");
      signal(-pid, "SIGKILL");
      for (const p of [pid, ...tree]) signal(p, "SIGKILL");
    }
    await this.#exited;
  }

  /** Proportional memory (PSS) of the worker and its descendants, in bytes; 0 when unknown. */
  memoryBytes(): number {
    const pid = this.#child.pid;
    if (pid === undefined || this.dead) return 0;
    let total = 0;
    for (const p of [pid, ...descendantsOf(pid)]) total += pssBytes(p);
    return total;
  }

  #send(message: ServerMessage): void {
    if (this.#dead) return;
    this.#child.stdin?.write(encodeMessage(message));
  }

  #listen(onReady: () => void): void {
    const protocol = this.#child.stdio[3] as Readable;
    const messages = new LineSplitter(
      MAX_MESSAGE_LENGTH,
      (line) => this.#onMessage(line, onReady),
      () => this.#broken("a protocol message longer than the server accepts"),
    );
    protocol.setEncoding("utf8");
    protocol.on("data", (chunk: string) => messages.push(chunk));
    for (const stream of ["stdout", "stderr"] as const) {
      const readable = this.#child[stream] as Readable;
      const lines = this.#outputLines(stream);
      readable.setEncoding("utf8");
      readable.on("data", (chunk: string) => lines.push(chunk));
      readable.on("end", () => lines.end());
    }
    // A write to a worker that died meanwhile must not take the server down.
    (this.#child.stdin as Writable | null)?.on("error", () => {});
  }

  /** Output of the running job, cut into lines (each line goes to the job running when it is complete). */
  #outputLines(stream: "stdout" | "stderr"): LineSplitter {
    return new LineSplitter(
      MAX_OUTPUT_LINE,
      (line) => this.#job?.listener.output(stream, line),
      (partial) => this.#job?.listener.output(stream, `${partial.slice(0, MAX_OUTPUT_LINE)} [line cut at ${MAX_OUTPUT_LINE} characters]`),
    );
  }

  /** The job's last written line without a newline goes to that job, not to the next one. */
  #endWritten(): void {
    this.#written.stdout.end();
    this.#written.stderr.end();
  }

  #onMessage(line: string, onReady: () => void): void {
    if (line.trim() === "") return;
    let json: unknown;
    try {
      json = JSON.parse(line);
    } catch {
      return this.#broken("a protocol message that is not JSON");
    }
    const parsed = workerMessage.safeParse(json);
    if (!parsed.success) return this.#broken("a protocol message of an unknown shape");
    const message = parsed.data;
    const job = this.#job;
    switch (message.type) {
      case "ready":
        return onReady();
      case "started":
        if (job?.id === message.jobId) job.listener.started();
        return;
      case "log":
        // A job that ended already is closed: late lines (a timer the code left behind) are dropped.
        if (job?.id === message.jobId) job.listener.log(message.level, message.message);
        return;
      case "output":
        if (job?.id === message.jobId) this.#written[message.stream].push(message.text);
        return;
      case "artifact":
        if (job?.id === message.jobId) job.listener.artifact?.(message.kind, message.sizeBytes, message.data);
        return;
      case "ended":
        if (job?.id !== message.jobId) return;
        this.#endWritten();
        this.#job = undefined;
        this.lastUsedAt = Date.now();
        job.listener.ended(message.outcome);
        return;
      case "idle":
        if (this.#job) return; // not before its job ended
        this.#idle = true;
        this.lastUsedAt = Date.now();
        for (const waiter of this.#idleWaiters.splice(0)) waiter();
        return;
      case "discovered":
        this.#discoveries.get(message.requestId)?.resolve(message.workflows);
        this.#discoveries.delete(message.requestId);
        return;
      case "discover-failed":
        this.#discoveries.get(message.requestId)?.reject(new Error(message.error));
        this.#discoveries.delete(message.requestId);
        return;
    }
  }

  #broken(what: string): void {
    if (this.#dead) return;
    this.#die(`it sent ${what}`);
    void this.kill();
  }

  #die(reason: string): void {
    if (this.#dead) return;
    this.#dead = reason;
    this.#idle = false;
    this.#endWritten();
    const job = this.#job;
    this.#job = undefined;
    job?.listener.lost(reason);
    for (const waiter of this.#idleWaiters.splice(0)) waiter();
    for (const pending of this.#discoveries.values()) pending.reject(new Error(`The worker process stopped: ${reason}.`));
    this.#discoveries.clear();
  }
}

/** Loading a deployment's entry point did not finish: the worker is still busy with it. */
export class DiscoverTimeoutError extends Error {}

/** How a worker ended, in words. bubblewrap reports its child's death by signal N as exit code 128 + N. */
function exitReason(code: number | null, signal: NodeJS.Signals | null): string {
  if (signal) return `it was killed by ${signal}`;
  if (code !== null && code > 128 && code <= 128 + 64) {
    const name = Object.entries(constants.signals).find(([, n]) => n === code - 128)?.[0];
    return `it was killed by ${name ?? `signal ${code - 128}`}`;
  }
  return `it exited with code ${code}`;
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // Gone already.
  }
}

/** Every descendant of `root`, from the parent links in /proc (Linux). */
export function descendantsOf(root: number): number[] {
  const children = new Map<number, number[]>();
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    return [];
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      // The second field (comm) may hold spaces and parentheses: the parent pid follows the last ")".
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(entry));
      children.set(ppid, list);
    } catch {
      // Ended meanwhile.
    }
  }
  const found: number[] = [];
  const queue = [root];
  while (queue.length > 0) {
    for (const child of children.get(queue.shift()!) ?? []) {
      found.push(child);
      queue.push(child);
    }
  }
  return found;
}

function pssBytes(pid: number): number {
  try {
    const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
    const match = /^Pss:\s+(\d+) kB/m.exec(rollup);
    return match ? Number(match[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}
