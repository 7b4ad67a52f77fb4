/**
 * /v1/jobs/list and /v1/logs/list: order, filters, limits and paging with
 * opaque cursors, as API.md states them. Each test lists a fresh tenant's
 * rows, so what other tests queue never shows up.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { workflow } from "../../src/workflows/define";
import { addTenant, startTestServer, uniqueName, type TestServer } from "../helpers";
import { envelop, expectError, expectOk, expectValidationError, ISO_UTC, UUID } from "../http/wire";
import { createJob, FAST_ENV, waitForEnd } from "./support";

const ok = workflow("ok", () => ({ ok: true }));
const fails = workflow("fails", () => {
  throw new Error("this one fails");
});
const chatty = workflow("chatty", (ctx, input: { lines?: number }) => {
  if (input.lines) {
    for (let i = 1; i <= input.lines; i++) ctx.log.info(`bulk ${i}`);
    return null;
  }
  ctx.log.info("line 1");
  ctx.log.warn("line 2");
  ctx.log.error("line 3");
  console.log("line %d", 4);
  ctx.log.info("line 5");
  return null;
});
const quiet = workflow("quiet", (ctx) => {
  ctx.log.info("quiet line");
  return null;
});

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({ workflows: [ok, fails, chatty, quiet], env: FAST_ENV });
});
afterAll(async () => server.close());

async function freshTenant() {
  const tenant = await addTenant(server, uniqueName("tenant"));
  const list = async (input: Record<string, unknown>) => expectOk(await server.post("/v1/jobs/list", input, { key: tenant.key }), false);
  const logs = async (input: Record<string, unknown>) => expectOk(await server.post("/v1/logs/list", input, { key: tenant.key }), false);
  const run = async (input: Record<string, unknown>) => {
    const id = await createJob(server, input, tenant.key);
    await waitForEnd(server, id, tenant.key);
    return id;
  };
  return { ...tenant, list, logs, run };
}

const ids = (output: { jobs: { job_id: string }[] }) => output.jobs.map((j) => j.job_id);

describe("/v1/jobs/list", () => {
  let t: Awaited<ReturnType<typeof freshTenant>>;
  /** Created in this order: ok, fails, ok, ok, fails, ok, ok, fails, ok, fails. */
  const created: { id: string; workflow: string }[] = [];
  beforeAll(async () => {
    t = await freshTenant();
    for (const name of ["ok", "fails", "ok", "ok", "fails", "ok", "ok", "fails", "ok", "fails"]) {
      created.push({ id: await t.run({ workflow: name }), workflow: name });
    }
  });
  const newestFirst = (filter: (c: { workflow: string }) => boolean = () => true) =>
    created
      .filter(filter)
      .map((c) => c.id)
      .reverse();

  test("newest first, with exactly the fields of API.md, and next_cursor null at the end", async () => {
    const output = await t.list({});
    expect(Object.keys(output).sort()).toEqual(["jobs", "next_cursor"]);
    expect(ids(output)).toEqual(newestFirst());
    expect(output.next_cursor).toBeNull();
    for (const job of output.jobs) {
      expect(Object.keys(job).sort()).toEqual(["completed_at", "created_at", "deployment_id", "job_id", "status", "workflow", "workflow_id"]);
      expect(job.job_id).toMatch(UUID);
      expect(job.deployment_id).toMatch(UUID);
      expect(job.workflow_id).toMatch(UUID);
      expect(job.created_at).toMatch(ISO_UTC);
      expect(job.completed_at).toMatch(ISO_UTC);
      expect(job.status).toBe(job.workflow === "ok" ? "completed" : "failed");
    }
    expect(expectOk(await server.post("/v1/jobs/list", envelop({}), { key: t.key }), true)).toEqual(output);
  });

  test("filters by status and by workflow, alone and together", async () => {
    expect(ids(await t.list({ status: "failed" }))).toEqual(newestFirst((c) => c.workflow === "fails"));
    expect(ids(await t.list({ status: "completed" }))).toEqual(newestFirst((c) => c.workflow === "ok"));
    expect(ids(await t.list({ status: "queued" }))).toEqual([]);
    expect(ids(await t.list({ workflow: "fails" }))).toEqual(newestFirst((c) => c.workflow === "fails"));
    expect(ids(await t.list({ workflow: "ok", status: "completed" }))).toEqual(newestFirst((c) => c.workflow === "ok"));
    expect(ids(await t.list({ workflow: "ok", status: "failed" }))).toEqual([]);
    expect(ids(await t.list({ workflow: "no-such-workflow" }))).toEqual([]);
  });

  test("limit gives the newest n and a cursor", async () => {
    const output = await t.list({ limit: 3 });
    expect(ids(output)).toEqual(newestFirst().slice(0, 3));
    expect(typeof output.next_cursor).toBe("string");
    const one = await t.list({ limit: 1 });
    expect(ids(one)).toEqual(newestFirst().slice(0, 1));
  });

  test("cursor paging covers every job exactly once, in order, with and without a filter", async () => {
    for (const [filter, expected] of [
      [{}, newestFirst()],
      [{ status: "completed" }, newestFirst((c) => c.workflow === "ok")],
    ] as const) {
      for (const limit of [1, 3, 4, 10]) {
        const seen: string[] = [];
        let cursor: string | null = null;
        for (let page = 0; page < 20; page++) {
          const output: any = await t.list(cursor ? { ...filter, limit, cursor } : { ...filter, limit });
          expect(output.jobs.length).toBeLessThanOrEqual(limit);
          seen.push(...ids(output));
          cursor = output.next_cursor;
          if (cursor === null) break;
        }
        expect(cursor).toBeNull();
        expect(seen).toEqual([...expected]);
      }
    }
  });

  test("limit defaults to 20 and is 1..100", async () => {
    const many = await freshTenant();
    const queued: string[] = [];
    for (let i = 0; i < 21; i++) queued.push(await createJob(server, { workflow: "ok" }, many.key));
    const first = await many.list({});
    expect(first.jobs.length).toBe(20);
    expect(ids(first)).toEqual([...queued].reverse().slice(0, 20));
    const rest = await many.list({ cursor: first.next_cursor });
    expect(ids(rest)).toEqual([queued[0]!]);
    expect(rest.next_cursor).toBeNull();
    expect((await many.list({ limit: 100 })).jobs.length).toBe(21);
    for (const limit of [0, 101, -1, 2.5]) {
      const issues = expectValidationError(await server.post("/v1/jobs/list", { limit }, { key: many.key }), false);
      expect(issues.map((i) => i.path[0])).toContain("limit");
    }
  });

  test("a cursor this server did not give out is 400", async () => {
    for (const cursor of ["garbage", Buffer.from("x12").toString("base64url"), Buffer.from("c-1").toString("base64url"), "!!"]) {
      const error = expectError(await server.post("/v1/jobs/list", { cursor }, { key: t.key }), 400, "BAD_REQUEST", false);
      expect(error.data.issues.map((i: { path: string[] }) => i.path[0])).toEqual(["cursor"]);
      expect(error.message).toContain("cursor");
    }
  });

  test("an unknown status is 400 naming the statuses", async () => {
    const issues = expectValidationError(await server.post("/v1/jobs/list", { status: "done" }, { key: t.key }), false);
    expect(issues[0]!.path).toEqual(["status"]);
    expect(issues[0]!.message).toContain("queued");
  });
});

describe("/v1/logs/list", () => {
  test("a job's lines, oldest first, with exactly the fields of API.md; console output included", async () => {
    const t = await freshTenant();
    const id = await t.run({ workflow: "chatty" });
    const output = await t.logs({ jobId: id });
    expect(Object.keys(output).sort()).toEqual(["logs", "nextPageToken"]);
    expect(output.nextPageToken).toBeNull();
    expect(output.logs.map((l: any) => l.message)).toEqual(["line 1", "line 2", "line 3", "line 4", "line 5"]);
    expect(output.logs.map((l: any) => l.level)).toEqual(["info", "warn", "error", "info", "info"]);
    for (const line of output.logs) {
      expect(Object.keys(line).sort()).toEqual(["jobId", "level", "message", "timestamp", "workflow"]);
      expect(line.jobId).toBe(id);
      expect(line.workflow).toBe("chatty");
      expect(line.timestamp).toMatch(ISO_UTC);
    }
    const stamps = output.logs.map((l: any) => l.timestamp);
    expect([...stamps].sort()).toEqual(stamps);
    expect(expectOk(await server.post("/v1/logs/list", envelop({ jobId: id }), { key: t.key }), true)).toEqual(output);
  });

  test("level filter", async () => {
    const t = await freshTenant();
    const id = await t.run({ workflow: "chatty" });
    const messages = async (level: string) => (await t.logs({ jobId: id, level })).logs.map((l: any) => l.message);
    expect(await messages("info")).toEqual(["line 1", "line 4", "line 5"]);
    expect(await messages("warn")).toEqual(["line 2"]);
    expect(await messages("error")).toEqual(["line 3"]);
    const issues = expectValidationError(await server.post("/v1/logs/list", { jobId: id, level: "debug" }, { key: t.key }), false);
    expect(issues[0]!.path).toEqual(["level"]);
  });

  test("pageToken paging covers every line exactly once, in order", async () => {
    const t = await freshTenant();
    const id = await t.run({ workflow: "chatty" });
    for (const limit of [1, 2, 3, 5]) {
      const seen: string[] = [];
      let pageToken: string | null = null;
      for (let page = 0; page < 10; page++) {
        const output: any = await t.logs(pageToken ? { jobId: id, limit, pageToken } : { jobId: id, limit });
        expect(output.logs.length).toBeLessThanOrEqual(limit);
        seen.push(...output.logs.map((l: any) => l.message));
        pageToken = output.nextPageToken;
        if (pageToken === null) break;
      }
      expect(pageToken).toBeNull();
      expect(seen).toEqual(["line 1", "line 2", "line 3", "line 4", "line 5"]);
    }
    // Filtered paging too.
    const first = await t.logs({ jobId: id, level: "info", limit: 2 });
    expect(first.logs.map((l: any) => l.message)).toEqual(["line 1", "line 4"]);
    const second = await t.logs({ jobId: id, level: "info", limit: 2, pageToken: first.nextPageToken });
    expect(second.logs.map((l: any) => l.message)).toEqual(["line 5"]);
    expect(second.nextPageToken).toBeNull();
  });

  test("limit defaults to 100 and is 1..1000; a bad page token is 400", async () => {
    const t = await freshTenant();
    const id = await t.run({ workflow: "chatty", params: { lines: 150 } });
    const first = await t.logs({ jobId: id });
    expect(first.logs.length).toBe(100);
    expect(first.logs[0].message).toBe("bulk 1");
    const rest = await t.logs({ jobId: id, pageToken: first.nextPageToken });
    expect(rest.logs.map((l: any) => l.message)).toEqual(Array.from({ length: 50 }, (_, i) => `bulk ${i + 101}`));
    expect(rest.nextPageToken).toBeNull();
    expect((await t.logs({ jobId: id, limit: 1000 })).logs.length).toBe(150);
    for (const limit of [0, 1001]) {
      const issues = expectValidationError(await server.post("/v1/logs/list", { jobId: id, limit }, { key: t.key }), false);
      expect(issues[0]!.path).toEqual(["limit"]);
    }
    const error = expectError(await server.post("/v1/logs/list", { jobId: id, pageToken: "garbage" }, { key: t.key }), 400, "BAD_REQUEST", false);
    expect(error.data.issues[0].path).toEqual(["pageToken"]);
  });

  test("without jobId: every job of the tenant, each job's lines in order; the workflow filter narrows it", async () => {
    const t = await freshTenant();
    const a = await t.run({ workflow: "chatty" });
    const b = await t.run({ workflow: "quiet" });
    const all = (await t.logs({})).logs;
    expect(all.filter((l: any) => l.jobId === a).map((l: any) => l.message)).toEqual(["line 1", "line 2", "line 3", "line 4", "line 5"]);
    expect(all.filter((l: any) => l.jobId === b).map((l: any) => l.message)).toEqual(["quiet line"]);
    expect(all.length).toBe(6);
    const quietOnly = (await t.logs({ workflow: "quiet" })).logs;
    expect(quietOnly.map((l: any) => [l.jobId, l.message])).toEqual([[b, "quiet line"]]);
  });

  test("an unknown jobId is 404", async () => {
    const t = await freshTenant();
    expectError(await server.post("/v1/logs/list", { jobId: crypto.randomUUID() }, { key: t.key }), 404, "NOT_FOUND", false);
  });
});
