/**
 * The runner as a user sees it: never more than UNDERSTUDY_CONCURRENCY jobs at
 * once, fair across tenants, input checked against the workflow's schema, and
 * a handler's throw, oversized or non-JSON result ending the job failed with a
 * message that says why.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { z } from "zod";
import { workflow } from "../../src/workflows/define";
import { startTestServer, type TestServer } from "../helpers";
import { createJob, eventually, FAST_ENV, gate, getJob, waitForEnd, waitForRunning } from "./support";

describe("concurrency", () => {
  test("never more than UNDERSTUDY_CONCURRENCY jobs run at once, and the limit is reached", async () => {
    let inFlight = 0;
    let maxInFlight = 0;
    const server = await startTestServer({
      workflows: [
        workflow("busy", async () => {
          inFlight += 1;
          maxInFlight = Math.max(maxInFlight, inFlight);
          await new Promise((resolve) => setTimeout(resolve, 20));
          inFlight -= 1;
          return { ok: true };
        }),
      ],
      env: { ...FAST_ENV, UNDERSTUDY_CONCURRENCY: "2" },
    });
    try {
      const ids = await Promise.all(Array.from({ length: 10 }, () => createJob(server, { workflow: "busy" })));
      const jobs = await Promise.all(ids.map((id) => waitForEnd(server, id)));
      expect(jobs.map((j) => j.status)).toEqual(ids.map(() => "completed"));
      expect(server.runner.maxObservedConcurrency).toBe(2);
      expect(maxInFlight).toBe(2);
      expect(server.runner.runningCount).toBe(0);
    } finally {
      await server.close();
    }
  });
});

describe("fairness across tenants", () => {
  test("with one slot, beta's one job starts before most of alpha's thirty queued ones", async () => {
    const started: string[] = [];
    const firstHeld = gate();
    let holdFirst = true;
    const server = await startTestServer({
      workflows: [
        workflow("ordered", async (_ctx, input: { who: string }) => {
          started.push(input.who);
          if (holdFirst) {
            holdFirst = false;
            await firstHeld.promise;
          }
          return { ok: true };
        }),
      ],
      env: { ...FAST_ENV, UNDERSTUDY_CONCURRENCY: "1" },
    });
    try {
      // Alpha's first job holds the only slot while the rest queue up behind it.
      const first = await createJob(server, { workflow: "ordered", params: { who: "alpha-0" } });
      await waitForRunning(server, first);
      const alphaIds = [first];
      for (let i = 1; i < 30; i++) alphaIds.push(await createJob(server, { workflow: "ordered", params: { who: `alpha-${i}` } }));
      const betaId = await createJob(server, { workflow: "ordered", params: { who: "beta" } }, server.keys.beta);
      expect((await getJob(server, betaId, server.keys.beta)).status).toBe("queued");

      firstHeld.open();
      await waitForEnd(server, betaId, server.keys.beta);
      await Promise.all(alphaIds.map((id) => waitForEnd(server, id)));
      expect(started.length).toBe(31);
      expect(started[0]).toBe("alpha-0");
      expect(started.indexOf("beta")).toBeLessThan(3);
      // Alpha's own jobs keep their order.
      expect(started.filter((w) => w !== "beta")).toEqual(alphaIds.map((_, i) => `alpha-${i}`));
    } finally {
      firstHeld.open();
      await server.close();
    }
  });

  test("jobs queued before the runner starts: beta's one is among the first claimed", async () => {
    const started: string[] = [];
    const server = await startTestServer({
      workflows: [
        workflow("ordered", (_ctx, input: { who: string }) => {
          started.push(input.who);
          return { ok: true };
        }),
      ],
      env: { ...FAST_ENV, UNDERSTUDY_CONCURRENCY: "1" },
      runnerPaused: true,
    });
    try {
      const ids: string[] = [];
      for (let i = 0; i < 30; i++) ids.push(await createJob(server, { workflow: "ordered", params: { who: `alpha-${i}` } }));
      const betaId = await createJob(server, { workflow: "ordered", params: { who: "beta" } }, server.keys.beta);
      server.runner.start();
      await Promise.all(ids.map((id) => waitForEnd(server, id)));
      await waitForEnd(server, betaId, server.keys.beta);
      expect(started.length).toBe(31);
      expect(started.indexOf("beta")).toBeLessThan(3);
    } finally {
      await server.close();
    }
  });
});

describe("how a run ends", () => {
  let handlerCalls = 0;
  const validated = workflow("validated", {
    input: z.object({ url: z.url(), count: z.number().int().min(1) }),
    handler(_ctx, input: { url: string; count: number }) {
      handlerCalls += 1;
      return { url: input.url, count: input.count };
    },
  });
  const thrower = workflow("thrower", function throwingHandler() {
    throw new TypeError("the page had no login form");
  });
  const throwsString = workflow("throws-string", () => {
    throw "a plain string";
  });
  const big = workflow("big", (_ctx, input: { bytes: number }) => ({ blob: "x".repeat(input.bytes) }));
  const bigint = workflow("bigint", () => ({ n: 10n }));
  const circular = workflow("circular", () => {
    const value: Record<string, unknown> = {};
    value.self = value;
    return value;
  });
  const nothing = workflow("returns-nothing", () => undefined);

  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({
      workflows: [validated, thrower, throwsString, big, bigint, circular, nothing],
      env: { ...FAST_ENV, UNDERSTUDY_MAX_RESULT_BYTES: "1000" },
    });
  });
  afterAll(async () => server.close());

  const run = async (input: Record<string, unknown>) => waitForEnd(server, await createJob(server, input));

  test("params that fail the workflow's input schema end the job failed, naming the fields; the handler never runs", async () => {
    const before = handlerCalls;
    const job = await run({ workflow: "validated", params: { url: "not a url", count: "three" } });
    expect(job.status).toBe("failed");
    expect(job.failure_class).toBe("error");
    expect(job.error).toContain('Invalid input for workflow "validated"');
    expect(job.error).toContain("url:");
    expect(job.error).toContain("count:");
    expect(handlerCalls).toBe(before);

    const ok = await run({ workflow: "validated", params: { url: "https://example.com/", count: 2 } });
    expect(ok.status).toBe("completed");
    expect(ok.result).toEqual({ url: "https://example.com/", count: 2 });
    expect(handlerCalls).toBe(before + 1);
  });

  test("a throwing handler ends failed with its message as error and a stack in mapped_stack", async () => {
    const job = await run({ workflow: "thrower" });
    expect(job.status).toBe("failed");
    expect(job.failure_class).toBe("error");
    expect(job.error).toBe("the page had no login form");
    expect(job.mapped_stack).toContain("TypeError: the page had no login form");
    expect(job.mapped_stack).toContain("throwingHandler");
    expect(job).not.toHaveProperty("result");
  });

  test("a handler that throws a non-error still fails with a message", async () => {
    const job = await run({ workflow: "throws-string" });
    expect(job.status).toBe("failed");
    expect(job.failure_class).toBe("error");
    expect(job.error).toContain("a plain string");
  });

  test("a result over UNDERSTUDY_MAX_RESULT_BYTES ends failed, saying the size and the limit", async () => {
    const job = await run({ workflow: "big", params: { bytes: 2000 } });
    expect(job.status).toBe("failed");
    expect(job.failure_class).toBe("error");
    expect(job.error).toContain("the limit is 1000 bytes");
    expect(job.error).toContain("UNDERSTUDY_MAX_RESULT_BYTES");
    expect(job).not.toHaveProperty("result");
    // Just under the limit is fine.
    expect((await run({ workflow: "big", params: { bytes: 900 } })).status).toBe("completed");
  });

  test("a result that is not JSON (a BigInt, a cycle) ends failed, saying so", async () => {
    for (const name of ["bigint", "circular"]) {
      const job = await run({ workflow: name });
      expect(job.status).toBe("failed");
      expect(job.failure_class).toBe("error");
      expect(job.error).toContain("return value is not JSON");
    }
  });

  test("a handler that returns nothing completes with result null", async () => {
    const job = await run({ workflow: "returns-nothing" });
    expect(job.status).toBe("completed");
    expect(job.result).toBeNull();
  });
});

test("the runner claims nothing until it is started", async () => {
  const server = await startTestServer({ workflows: [workflow("noop", () => 1)], runnerPaused: true, env: FAST_ENV });
  try {
    const id = await createJob(server, { workflow: "noop" });
    // A create wakes the runner; a paused one must not claim.
    for (let i = 0; i < 5; i++) expect((await getJob(server, id)).status).toBe("queued");
    expect(server.runner.maxObservedConcurrency).toBe(0);
    server.runner.start();
    expect((await waitForEnd(server, id)).status).toBe("completed");
    await eventually("the runner is idle", () => server.runner.runningCount === 0);
  } finally {
    await server.close();
  }
});
