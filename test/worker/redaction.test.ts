import { afterAll, expect, test } from "bun:test";
import { randomUUID } from "node:crypto";
import { call, waitForJob } from "../e2e/serve-child";
import { awkwardValue, logFormsFindings } from "../runner/value-forms";
import { workerScope } from "./process-tree";

// What a handler writes of its injected value, every way it can write
// (test/fixtures/worker-workflows/leak.ts): process.stdout/stderr straight,
// a value split across two writes, console.*, ctx.log, its result, its
// error. The server redacts it all; its own output never holds the value.

const scope = workerScope();
afterAll(() => scope.cleanup());

test("a value written to stdout, stderr, console and ctx.log, returned or thrown, comes out as [REDACTED:name] only", async () => {
  const deployment = scope.deployment();
  const key = await deployment.addTenant("acme");
  const server = await scope.start(deployment);
  const value = `tok-${randomUUID()}`;
  expect((await call(server, key, "/v1/credentials/create", { name: "api_token", value })).status).toBe(200);
  // Checked as booleans throughout, so that no failure prints the value.
  const holds = (thing: unknown) => JSON.stringify(thing).includes(value);

  // Twice: the second job runs in the warm worker of the first.
  for (const run of [1, 2]) {
    const leak = await call(server, key, "/v1/jobs/create", { workflow: "leak", params: {} });
    const job = await waitForJob(server, key, leak.body.job_id, { timeoutMs: 20_000 });
    expect(job.status).toBe("completed");
    expect(job.result).toEqual({ echoed: "[REDACTED:api_token]", nested: { again: "x[REDACTED:api_token]x" } });
    expect(holds(job)).toBe(false);

    const logs = (await call(server, key, "/v1/logs/list", { jobId: leak.body.job_id })).body.logs as { level: string; message: string }[];
    expect(holds(logs)).toBe(false);
    const lines = logs.map((l) => ({ level: l.level, message: l.message }));
    // Each way of writing, once, in this job's log: nothing lost, nothing from another job.
    for (const line of [
      { level: "info", message: "stdout whole: [REDACTED:api_token]" },
      { level: "info", message: "stdout split: [REDACTED:api_token] end" },
      { level: "info", message: "stdout last: [REDACTED:api_token]" },
      { level: "error", message: "stderr: [REDACTED:api_token]" },
      { level: "error", message: "stderr split: [REDACTED:api_token]" },
      { level: "info", message: "console.log: [REDACTED:api_token]" },
      { level: "error", message: "console.error: [REDACTED:api_token]" },
      { level: "info", message: "ctx.log: [REDACTED:api_token]" },
    ]) {
      expect(lines.filter((l) => l.message === line.message), `run ${run}: "${line.message}" once in the job log`).toEqual([line]);
    }
    // The child process's raw write to fd 1 comes through the pipe: never unredacted (its job is not guaranteed).
    for (const l of lines.filter((l) => l.message.startsWith("child:"))) expect(l.message).toBe("child: [REDACTED:api_token]");
  }

  const thrown = await call(server, key, "/v1/jobs/create", { workflow: "leak-throw", params: {} });
  const failed = await waitForJob(server, key, thrown.body.job_id, { timeoutMs: 20_000 });
  expect(failed.status).toBe("failed");
  expect(failed.failure_class).toBe("error");
  expect(failed.error).toBe("could not log in with [REDACTED:api_token]");
  expect(holds(failed)).toBe(false);
  expect(holds((await call(server, key, "/v1/logs/list", { jobId: thrown.body.job_id })).body)).toBe(false);
  expect(holds((await call(server, key, "/v1/jobs/list", {})).body)).toBe(false);

  // The server's own output, all of it once it has stopped: not a trace either.
  expect(await server.stop()).toBe(0);
  expect(server.stdout().length).toBeGreaterThan(0);
  expect(server.stdout().includes(value)).toBe(false);
  expect(server.stderr().includes(value)).toBe(false);
  // Not even a part of it that a split write could leave.
  expect(server.stdout().includes(value.slice(7))).toBe(false);
  expect(server.stderr().includes(value.slice(7))).toBe(false);
}, 40_000);

test("in a worker, a value logged as base64 behind a prefix, through util.inspect, as JSON with \\u escapes, in three or more writes, and as hex is stored only as [REDACTED:name]", async () => {
  const deployment = scope.deployment();
  const key = await deployment.addTenant("acme");
  const server = await scope.start(deployment);
  const value = awkwardValue(randomUUID());
  expect((await call(server, key, "/v1/credentials/create", { name: "api_token", value })).status).toBe(200);
  // test/fixtures/worker-workflows/log-forms.ts, the same file test/jobs/log-redaction.test.ts runs in process.
  const created = await call(server, key, "/v1/jobs/create", { workflow: "log-forms", params: {} });
  const job = await waitForJob(server, key, created.body.job_id, { timeoutMs: 20_000 });
  expect(job.status).toBe("completed");
  const logs = (await call(server, key, "/v1/logs/list", { jobId: created.body.job_id, limit: 1000 })).body;
  expect(logs.nextPageToken).toBeNull();
  const messages = (logs.logs as { message: string }[]).map((l) => l.message);
  expect(logFormsFindings(messages, value, "api_token")).toEqual({ leaked: [], unredacted: [] });

  // Nor the server's own output.
  expect(await server.stop()).toBe(0);
  const output = server.stdout() + server.stderr();
  expect(output.includes(value)).toBe(false);
  expect(output.includes(value.slice(0, 20))).toBe(false);
}, 40_000);
