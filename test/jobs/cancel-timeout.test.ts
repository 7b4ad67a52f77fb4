/**
 * /v1/jobs/cancel and timeout_seconds: a queued job is cancelled at once, a
 * running one through its abort signal, a handler that ignores the signal is
 * left behind after the grace period, and the job still ends.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { workflow } from "../../src/workflows/define";
import { startTestServer, type TestServer } from "../helpers";
import { envelop, expectError, expectOk, ISO_UTC } from "../http/wire";
import { createJob, eventually, FAST_ENV, getJob, waitForEnd, waitForRunning } from "./support";

/** What each handler saw of its signal, by job id. */
const observed = new Map<string, { started: boolean; aborted?: boolean; reason?: unknown }>();

const cooperative = workflow("cooperative", async (ctx) => {
  const seen: { started: boolean; aborted?: boolean; reason?: unknown } = { started: true };
  observed.set(ctx.session, seen);
  await new Promise<void>((resolve) => ctx.signal.addEventListener("abort", () => resolve(), { once: true }));
  seen.aborted = ctx.signal.aborted;
  seen.reason = ctx.signal.reason;
  throw new Error("stopped because the signal fired");
});
const stubborn = workflow("stubborn", async (ctx) => {
  observed.set(ctx.session, { started: true });
  // Ignores its signal: never settles.
  await new Promise(() => {});
});
const quick = workflow("quick", (ctx) => {
  observed.set(ctx.session, { started: true });
  return { done: true };
});
const failing = workflow("failing", () => {
  throw new Error("nope");
});

const workflows = [cooperative, stubborn, quick, failing];
let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({ workflows, env: FAST_ENV });
});
afterAll(async () => server.close());

describe("/v1/jobs/cancel", () => {
  test("a queued job is cancelled at once and never runs", async () => {
    const paused = await startTestServer({ workflows, runnerPaused: true, env: FAST_ENV });
    try {
      const id = await createJob(paused, { workflow: "quick" });
      const output = expectOk(await paused.post("/v1/jobs/cancel", { id }), false);
      expect(Object.keys(output).sort()).toEqual(["message", "success"]);
      expect(output.success).toBe(true);
      expect(output.message).toContain(id);
      expect(output.message).toContain("cancelled");

      const job = await getJob(paused, id);
      expect(job.status).toBe("cancelled");
      expect(job.failure_class).toBe("cancelled");
      expect(job.started_at).toBeNull();
      expect(job.completed_at).toMatch(ISO_UTC);
      expect(job.error).toContain("cancelled");
      expect(job).not.toHaveProperty("result");

      // The runner, once started, runs the next job and never this one.
      const next = await createJob(paused, { workflow: "quick" });
      paused.runner.start();
      expect((await waitForEnd(paused, next)).status).toBe("completed");
      expect(observed.has(next)).toBe(true);
      expect(observed.has(id)).toBe(false);
      expect((await getJob(paused, id)).status).toBe("cancelled");
    } finally {
      await paused.close();
    }
  });

  test("enveloped: the answer mirrors the request", async () => {
    const paused = await startTestServer({ workflows, runnerPaused: true, env: FAST_ENV });
    try {
      const id = await createJob(paused, { workflow: "quick" });
      const output = expectOk(await paused.post("/v1/jobs/cancel", envelop({ id })), true);
      expect(output.success).toBe(true);
      expect((await getJob(paused, id)).status).toBe("cancelled");
    } finally {
      await paused.close();
    }
  });

  test("a running job's handler sees its signal fire, and the job ends cancelled", async () => {
    const id = await createJob(server, { workflow: "cooperative" });
    await waitForRunning(server, id);
    await eventually("the handler started", () => observed.get(id)?.started === true);
    const output = expectOk(await server.post("/v1/jobs/cancel", { id }), false);
    expect(output.success).toBe(true);
    const job = await waitForEnd(server, id);
    expect(job.status).toBe("cancelled");
    expect(job.failure_class).toBe("cancelled");
    expect(job.started_at).toMatch(ISO_UTC);
    expect(job.completed_at).toMatch(ISO_UTC);
    expect(job.error).toContain("cancelled");
    // The handler's own error after the abort does not replace the cancellation.
    expect(job.error).not.toContain("stopped because");
    expect(observed.get(id)).toEqual({ started: true, aborted: true, reason: "cancelled" });
  });

  test("a handler that ignores its signal is left behind after the grace period; the job still ends cancelled and frees its slot", async () => {
    const single = await startTestServer({ workflows, env: { ...FAST_ENV, UNDERSTUDY_CONCURRENCY: "1" } });
    try {
      const id = await createJob(single, { workflow: "stubborn" });
      await waitForRunning(single, id);
      const next = await createJob(single, { workflow: "quick" });
      expect((await getJob(single, next)).status).toBe("queued");
      expectOk(await single.post("/v1/jobs/cancel", { id }), false);
      const job = await waitForEnd(single, id);
      expect(job.status).toBe("cancelled");
      expect(job.failure_class).toBe("cancelled");
      // The one slot is free again: the queued job runs.
      expect((await waitForEnd(single, next)).status).toBe("completed");
    } finally {
      await single.close();
    }
  });

  test("an ended job cannot be cancelled: 409, and it stays as it ended", async () => {
    const completed = await waitForEnd(server, await createJob(server, { workflow: "quick" }));
    const failed = await waitForEnd(server, await createJob(server, { workflow: "failing" }));
    const paused = await startTestServer({ workflows, runnerPaused: true, env: FAST_ENV });
    try {
      for (const job of [completed, failed]) {
        const error = expectError(await server.post("/v1/jobs/cancel", { id: job.job_id }), 409, "CONFLICT", false);
        expect(error.message).toContain("already ended");
        expect(error.message).toContain(job.status);
        expect(error.data.status).toBe(job.status);
        expect(await getJob(server, job.job_id)).toEqual(job);
      }
      const id = await createJob(paused, { workflow: "quick" });
      expectOk(await paused.post("/v1/jobs/cancel", { id }), false);
      const again = expectError(await paused.post("/v1/jobs/cancel", envelop({ id })), 409, "CONFLICT", true);
      expect(again.data.status).toBe("cancelled");
    } finally {
      await paused.close();
    }
  });

  test("an unknown job is 404", async () => {
    const error = expectError(await server.post("/v1/jobs/cancel", { id: crypto.randomUUID() }), 404, "NOT_FOUND", false);
    expect(error.message).toContain("not found");
  });
});

describe("timeout_seconds", () => {
  test("a handler that ignores its signal fails with failure_class timeout", async () => {
    const id = await createJob(server, { workflow: "stubborn", timeout_seconds: 1 });
    const job = await waitForEnd(server, id);
    expect(job.status).toBe("failed");
    expect(job.failure_class).toBe("timeout");
    expect(job.error).toContain("timed out after 1 s");
    expect(job.error).toContain("timeout_seconds");
    expect(job).not.toHaveProperty("result");
  });

  test("a handler that honours its signal sees it fire with reason timeout; the job fails as a timeout, not an error", async () => {
    const id = await createJob(server, { workflow: "cooperative", timeout_seconds: 1 });
    const job = await waitForEnd(server, id);
    expect(job.status).toBe("failed");
    expect(job.failure_class).toBe("timeout");
    expect(job.error).toContain("timed out");
    expect(observed.get(id)).toEqual({ started: true, aborted: true, reason: "timeout" });
  });
});
