/**
 * What the libretto CLI (0.6.45) shows for jobs, over real HTTP:
 * - `libretto cloud jobs status` prints `Result: <JSON>` whenever the answer
 *   has a `result` key (cloud-job-status.ts), so only a completed job has one;
 * - `libretto cloud jobs create` prints the answer's `message` (cloud-jobs.ts),
 *   so options Understudy cannot honour are said there, not only in the log;
 * - the CLI sends any viewport side and timeout of at least 1; the server
 *   accepts them up to the limits Chromium and the job's timer impose.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { MAX_TIMEOUT_SECONDS } from "../../src/jobs/routes";
import { workflow } from "../../src/workflows/define";
import { describeWithChromium } from "../chromium";
import { startTestServer, type TestServer } from "../helpers";
import { envelop, expectError, expectOk } from "../http/wire";
import { createJob, FAST_ENV, getJob, jobLogs, waitForEnd, waitForRunning } from "./support";

const workflows = [
  workflow("returns-value", () => ({ title: "Portal home" })),
  workflow("returns-null", () => null),
  workflow("returns-nothing", async () => {}),
  workflow("throws", () => {
    throw new Error("the portal said no");
  }),
  // Runs until its signal fires (cancel), then ends.
  workflow("waits-for-signal", async (ctx) => {
    await new Promise<void>((resolve) => ctx.signal.addEventListener("abort", () => resolve(), { once: true }));
    throw new Error("stopped");
  }),
  // Outlives an overflowed timer (which fires at once) by a clear margin.
  workflow("takes-a-moment", async () => {
    await Bun.sleep(100);
    return "finished";
  }),
];

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({ workflows, env: FAST_ENV });
});
afterAll(async () => server.close());

/** jobs/get as the CLI sends it (enveloped); the raw JSON text too, to see which keys are on the wire. */
async function getAsCli(id: string): Promise<{ job: any; text: string }> {
  const response = await server.post("/v1/jobs/get", envelop({ id }));
  return { job: expectOk(response, true), text: response.text };
}

describe("jobs/get: result only when the job completed", () => {
  test("a queued job has no result key", async () => {
    const paused = await startTestServer({ workflows, runnerPaused: true, env: FAST_ENV });
    try {
      const id = await createJob(paused, { workflow: "returns-value" });
      const response = await paused.post("/v1/jobs/get", envelop({ id }));
      const job = expectOk(response, true);
      expect(job.status).toBe("queued");
      expect("result" in job).toBe(false);
      expect(response.text).not.toContain('"result"');
    } finally {
      await paused.close();
    }
  });

  test("a running job has no result key", async () => {
    const id = await createJob(server, { workflow: "waits-for-signal" });
    await waitForRunning(server, id);
    const { job, text } = await getAsCli(id);
    expect(job.status).toBe("running");
    expect("result" in job).toBe(false);
    expect(text).not.toContain('"result"');
    expectOk(await server.post("/v1/jobs/cancel", { id }), false);
    await waitForEnd(server, id);
  });

  test("a failed job has its error and no result key", async () => {
    const id = await createJob(server, { workflow: "throws" });
    await waitForEnd(server, id);
    const { job, text } = await getAsCli(id);
    expect(job.status).toBe("failed");
    expect(job.error).toContain("the portal said no");
    expect("result" in job).toBe(false);
    expect(text).not.toContain('"result"');
  });

  test("a cancelled job (running, then cancelled) has no result key", async () => {
    const id = await createJob(server, { workflow: "waits-for-signal" });
    await waitForRunning(server, id);
    expectOk(await server.post("/v1/jobs/cancel", { id }), false);
    await waitForEnd(server, id);
    const { job, text } = await getAsCli(id);
    expect(job.status).toBe("cancelled");
    expect("result" in job).toBe(false);
    expect(text).not.toContain('"result"');
  });

  test("a completed job has the handler's return value", async () => {
    const id = await createJob(server, { workflow: "returns-value" });
    await waitForEnd(server, id);
    const { job } = await getAsCli(id);
    expect(job.status).toBe("completed");
    expect(job.result).toEqual({ title: "Portal home" });
  });

  test("a completed job whose handler returned null or nothing has result null (JSON has no undefined)", async () => {
    for (const name of ["returns-null", "returns-nothing"]) {
      const id = await createJob(server, { workflow: name });
      await waitForEnd(server, id);
      const { job, text } = await getAsCli(id);
      expect(job.status).toBe("completed");
      expect("result" in job).toBe(true);
      expect(job.result).toBeNull();
      expect(text).toContain('"result":null');
    }
  });

  test("the OpenAPI document says result is optional", async () => {
    const doc = (await fetch(`${server.url}/v1/openapi.json`).then((r) => r.json())) as any;
    const output = doc.paths["/v1/jobs/get"].post.responses["200"].content["application/json"].schema.oneOf[0];
    expect(output.properties.result).toBeDefined();
    expect(output.required).not.toContain("result");
    expect(output.required).toContain("status");
  });
});

describe("jobs/create: the message says which options are not honoured", () => {
  const NOTES: [string, unknown, string][] = [
    ["gpu", true, "GPU machines are a Libretto Cloud feature; this job runs on this server's CPU."],
    ["residential_proxy", { country: "US" }, "Residential proxies are a Libretto Cloud feature; this job uses this server's own network."],
    ["disable_default_proxy", true, "Understudy has no default proxy; disable_default_proxy changes nothing."],
    ["credential_id", "cred_hosted_123", "credential_id is a Libretto Cloud option; Understudy injects the credentials the workflow declares."],
  ];

  test("without hosted-only options the message only says the job is queued", async () => {
    const output = expectOk(await server.post("/v1/jobs/create", envelop({ workflow: "returns-value", params: {} })), true);
    expect(output.message).toBe('Job queued for workflow "returns-value".');
  });

  for (const [field, value, note] of NOTES) {
    test(`${field} (as the CLI sends it) is named in the message and in the job log`, async () => {
      const output = expectOk(await server.post("/v1/jobs/create", envelop({ workflow: "returns-value", params: {}, [field]: value })), true);
      expect(output.message).toBe(`Job queued for workflow "returns-value". ${note}`);
      await waitForEnd(server, output.job_id);
      expect((await jobLogs(server, output.job_id)).map((l) => l.message)).toContain(note);
    });
  }

  test("all four at once: each note once, in the message", async () => {
    const input = Object.fromEntries(NOTES.map(([field, value]) => [field, value]));
    const output = expectOk(await server.post("/v1/jobs/create", envelop({ workflow: "returns-value", ...input })), true);
    expect(output.message).toBe(['Job queued for workflow "returns-value".', ...NOTES.map(([, , note]) => note)].join(" "));
  });

  test("false flags are not mentioned", async () => {
    const output = expectOk(await server.post("/v1/jobs/create", { workflow: "returns-value", gpu: false, disable_default_proxy: false }), false);
    expect(output.message).toBe('Job queued for workflow "returns-value".');
  });
});

describe("jobs/create: timeout_seconds and viewport take what the CLI sends", () => {
  test("timeouts above the old 3600 are accepted and stored, up to the timer's limit", async () => {
    for (const timeout_seconds of [1, 3601, 86_400, MAX_TIMEOUT_SECONDS]) {
      const id = await createJob(server, { workflow: "returns-value", timeout_seconds });
      expect((await getJob(server, id)).timeout_seconds).toBe(timeout_seconds);
    }
    expect(MAX_TIMEOUT_SECONDS).toBe(2_147_483);
  });

  test("a job with the largest timeout runs to completion (its timer did not overflow and fire at once)", async () => {
    const job = await waitForEnd(server, await createJob(server, { workflow: "takes-a-moment", timeout_seconds: MAX_TIMEOUT_SECONDS }));
    expect(job.status).toBe("completed");
    expect(job.result).toBe("finished");
  });

  test("a timeout past the timer's limit is a 400 that says why", async () => {
    const error = expectError(
      await server.post("/v1/jobs/create", envelop({ workflow: "returns-value", timeout_seconds: MAX_TIMEOUT_SECONDS + 1 })),
      400,
      "BAD_REQUEST",
      true,
    );
    expect(error.message).toBe(
      "Invalid input: timeout_seconds must be at most 2147483 (about 24 days): the job's timer cannot wait longer, and a longer timeout would end the job at once.",
    );
    expect(error.data.issues.map((i: any) => i.path)).toEqual([["timeout_seconds"]]);
    for (const timeout_seconds of [0, -5, 1.5]) {
      const bad = expectError(await server.post("/v1/jobs/create", { workflow: "returns-value", timeout_seconds }), 400, "BAD_REQUEST", false);
      expect(bad.data.issues[0].path).toEqual(["timeout_seconds"]);
    }
  });

  test("viewport sides from 1 to 10000000 are accepted (the old 100 minimum and 7680x4320 maximum are gone)", async () => {
    for (const viewport of [{ width: 1, height: 1 }, { width: 99, height: 50 }, { width: 7681, height: 4321 }, { width: 10_000_000, height: 10_000_000 }]) {
      const output = expectOk(await server.post("/v1/jobs/create", envelop({ workflow: "returns-value", viewport })), true);
      expect(output.status).toBe("queued");
      const stored = await server.db.selectFrom("jobs").select("options").where("id", "=", output.job_id).executeTakeFirstOrThrow();
      expect(JSON.parse(stored.options).viewport).toEqual(viewport);
    }
  });

  test("a 0-pixel or larger-than-Chromium viewport is a 400 that says why", async () => {
    const zero = expectError(await server.post("/v1/jobs/create", { workflow: "returns-value", viewport: { width: 0, height: 600 } }), 400, "BAD_REQUEST", false);
    expect(zero.message).toBe(
      "Invalid input: viewport.width must be at least 1 pixel: Chromium ignores a 0-pixel viewport and uses its default size.",
    );
    const huge = expectError(
      await server.post("/v1/jobs/create", { workflow: "returns-value", viewport: { width: 800, height: 10_000_001 } }),
      400,
      "BAD_REQUEST",
      false,
    );
    expect(huge.message).toBe(
      "Invalid input: viewport.height must be at most 10000000 pixels: Chromium refuses a larger viewport and the browser would not start.",
    );
    const fraction = expectError(await server.post("/v1/jobs/create", { workflow: "returns-value", viewport: { width: 800.5, height: 600 } }), 400, "BAD_REQUEST", false);
    expect(fraction.data.issues[0].path).toEqual(["viewport", "width"]);
  });
});

describeWithChromium("jobs/create viewport limits in a real browser", (chromium) => {
  let browserServer: TestServer;
  beforeAll(async () => {
    const probe = workflow("viewport-probe", async (ctx) => {
      await ctx.page.setContent("<p>probe</p>");
      // The size the page itself sees (a string: the test's types have no DOM).
      return ctx.page.evaluate("({ width: innerWidth, height: innerHeight })");
    });
    browserServer = await startTestServer({ workflows: [probe], env: { ...FAST_ENV, UNDERSTUDY_CHROMIUM_PATH: chromium } });
  });
  afterAll(async () => browserServer.close());

  test("the smallest viewport (1x1) and the widest side (10000000) both run in Chromium", async () => {
    for (const viewport of [{ width: 1, height: 1 }, { width: 10_000_000, height: 1 }]) {
      const job = await waitForEnd(browserServer, await createJob(browserServer, { workflow: "viewport-probe", viewport }));
      expect({ status: job.status, error: job.error, result: job.result }).toEqual({ status: "completed", error: null, result: viewport });
    }
  }, 60_000);
});
