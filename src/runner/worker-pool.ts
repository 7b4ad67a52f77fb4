import type { Logger } from "../log";
import type { WorkerKind } from "../worker/protocol";
import type { WorkerProcess } from "./worker-process";

export interface PoolLimits {
  /** Most idle (warm) workers kept, over all tenants; the least recently used goes first. */
  maxWarm: number;
  /** An idle worker older than this is stopped. */
  idleMs: number;
  /** Proportional memory of all workers (browsers included) above which idle ones are stopped, LRU first. */
  memoryBytes: number;
}

export interface PoolDeps {
  start(tenantId: string, kind: WorkerKind, generation: number): Promise<WorkerProcess>;
  limits: PoolLimits;
  log: Logger;
  /** The generation of file workflows a new worker must have (the registry's). */
  generation(): number;
}

export interface PoolStats {
  idle: number;
  busy: number;
  /** PSS of every worker with its browser, in bytes. */
  memoryBytes: number;
}

const SWEEP_MS = 5_000;
/** Longest a job waits for a worker of its tenant that is finishing its last job, before it starts a new one. */
const RETURN_WAIT_MS = 2_000;

/**
 * Warm worker processes, by tenant and kind. A job takes an idle worker of
 * its tenant (the most recently used one, whose browser is the warmest) or
 * gets a new one; afterwards the worker goes back to the pool, where the
 * limits keep 1,000 tenants from meaning 1,000 browsers: a cap on idle
 * workers, an idle timeout and a memory budget, each stopping the least
 * recently used idle worker first. Busy workers are never stopped for a limit.
 */
export class WorkerPool {
  readonly #deps: PoolDeps;
  /** Idle workers, least recently used first. */
  #idle: WorkerProcess[] = [];
  readonly #busy = new Set<WorkerProcess>();
  /** Workers whose job ended, finishing its cleanup before they are idle; each promise settles when it is idle or stopped. */
  readonly #returning = new Map<WorkerProcess, Promise<void>>();
  #sweep: ReturnType<typeof setInterval> | undefined;
  #stopping = false;

  constructor(deps: PoolDeps) {
    this.#deps = deps;
    // Often enough that a short idle timeout is kept to within half of it.
    this.#sweep = setInterval(() => void this.sweep(), Math.min(SWEEP_MS, Math.max(250, deps.limits.idleMs / 2)));
    (this.#sweep as { unref?: () => void }).unref?.();
  }

  /** A worker for one job of this tenant, busy until release(). */
  async acquire(tenantId: string, kind: WorkerKind): Promise<WorkerProcess> {
    if (this.#stopping) throw new Error("The server is stopping.");
    const generation = this.#deps.generation();
    const fits = (worker: WorkerProcess) => worker.tenantId === tenantId && worker.kind === kind && worker.generation === generation;
    const waitUntil = Date.now() + RETURN_WAIT_MS;
    for (;;) {
      for (let i = this.#idle.length - 1; i >= 0; i--) {
        const worker = this.#idle[i]!;
        if (!fits(worker) || !worker.idle) continue;
        this.#idle.splice(i, 1);
        this.#busy.add(worker);
        return worker;
      }
      // A job's end is visible (jobs/get says completed) before its worker
      // has closed the job's browser context and is back in the pool: the
      // tenant's next job, created at once, started a new worker and browser
      // (~1 s) beside the warm one. Wait, briefly, for one coming back.
      const returning = [...this.#returning].find(([worker]) => fits(worker));
      const left = waitUntil - Date.now();
      if (!returning || left <= 0) break;
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([returning[1], new Promise((resolve) => (timer = setTimeout(resolve, left)))]);
      clearTimeout(timer);
      if (this.#stopping) throw new Error("The server is stopping.");
    }
    const worker = await this.#deps.start(tenantId, kind, generation);
    this.#busy.add(worker);
    void worker.exited.then(() => this.#forget(worker));
    return worker;
  }

  /**
   * Gives a worker back after its job. `reusable` false (a killed or broken
   * worker) stops it; otherwise it waits for the worker's idle message (its
   * job's browser context closed) and keeps it warm.
   */
  async release(worker: WorkerProcess, reusable: boolean): Promise<void> {
    this.#busy.delete(worker);
    if (!reusable || this.#stopping || worker.dead || worker.generation !== this.#deps.generation()) {
      await worker.close();
      return;
    }
    let back!: () => void;
    this.#returning.set(worker, new Promise<void>((resolve) => (back = resolve)));
    try {
      // A worker that does not come back idle is stuck (a loop the code left running): stop it.
      if (!(await worker.waitIdle(10_000))) {
        await worker.kill();
        return;
      }
      if (this.#stopping) return void (await worker.close());
      this.#idle.push(worker);
    } finally {
      this.#returning.delete(worker);
      back();
    }
    // The memory budget is checked by the sweep: reading every worker's
    // /proc/*/smaps_rollup on each job's end would cost more than the job.
    const over = this.#idle.length - this.#deps.limits.maxWarm;
    if (over > 0) await Promise.all(this.#idle.splice(0, over).map((w) => w.close()));
  }

  /** Stops idle workers past the idle timeout, over the cap or over the memory budget. */
  async sweep(): Promise<void> {
    const now = Date.now();
    const expired = this.#idle.filter((w) => now - w.lastUsedAt > this.#deps.limits.idleMs || w.dead || w.generation !== this.#deps.generation());
    this.#idle = this.#idle.filter((w) => !expired.includes(w));
    await Promise.all(expired.map((w) => w.close()));
    await this.#enforceLimits();
  }

  stats(): PoolStats {
    const all = [...this.#idle, ...this.#busy];
    return { idle: this.#idle.length, busy: this.#busy.size, memoryBytes: all.reduce((sum, w) => sum + w.memoryBytes(), 0) };
  }

  /** Stops every worker; busy ones are killed (the runner has ended their jobs by now). */
  async shutdown(): Promise<void> {
    this.#stopping = true;
    clearInterval(this.#sweep);
    const idle = this.#idle.splice(0);
    const busy = [...this.#busy];
    this.#busy.clear();
    await Promise.all([...idle.map((w) => w.close()), ...busy.map((w) => w.kill())]);
  }

  async #enforceLimits(): Promise<void> {
    const { maxWarm, memoryBytes } = this.#deps.limits;
    const over = this.#idle.length - maxWarm;
    if (over > 0) await Promise.all(this.#idle.splice(0, over).map((w) => w.close()));
    if (this.#idle.length === 0) return;
    let used = this.stats().memoryBytes;
    while (used > memoryBytes && this.#idle.length > 0) {
      const oldest = this.#idle.shift()!;
      const freed = oldest.memoryBytes();
      this.#deps.log.log("info", "stopped a warm worker over the memory budget", { tenant_id: oldest.tenantId, freed_bytes: freed });
      await oldest.close();
      used -= freed;
    }
  }

  #forget(worker: WorkerProcess): void {
    this.#busy.delete(worker);
    this.#idle = this.#idle.filter((w) => w !== worker);
  }
}
