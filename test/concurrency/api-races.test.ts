/**
 * Requests that race on one server, through real HTTP: what a client sees
 * must be what some serial order of the same requests would give (a 200 and
 * 409s, a 200 and 404s), never a 500, and the rows must agree. SQLite runs
 * one write transaction at a time; on PostgreSQL (READ COMMITTED, a pool of
 * connections) these races are real, which is what this file is for.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { isPostgres } from "../../src/store/postgres";
import { workflow } from "../../src/workflows/define";
import { startTestServer, uniqueName, type TestResponse, type TestServer } from "../helpers";
import { expectError, expectOk } from "../http/wire";

const RACERS = 12;

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({
    // Jobs stay queued: they hold their references for the whole test.
    runnerPaused: true,
    workflows: [
      workflow("uses-portal", { authProfile: "portal", handler: () => null }),
      workflow("uses-token", { credentials: ["token"], handler: () => null }),
      workflow("plain", { handler: () => null }),
    ],
  });
});
afterAll(async () => server?.close());

/** `count` copies of the same request, sent at once. */
const race = (count: number, send: (i: number) => Promise<TestResponse>) => Promise.all(Array.from({ length: count }, (_, i) => send(i)));

const statusesOf = (responses: TestResponse[]) => responses.map((r) => r.status).sort();

/**
 * A delete sent amid 8 jobs/create of a workflow that references what it
 * deletes: every job queues, and the delete either went first (no job holds
 * a reference) or is a 409 naming jobs of this round.
 */
async function deleteAmidJobCreates(workflowName: string, remove: () => Promise<TestResponse>, referencesOf: () => Promise<{ job_id: string }[]>) {
  const create = () => server.post("/v1/jobs/create", { workflow: workflowName });
  const responses = await Promise.all([...Array.from({ length: 4 }, create), remove(), ...Array.from({ length: 4 }, create)]);
  const [deleteResponse] = responses.splice(4, 1);
  expect(statusesOf(responses)).toEqual(Array(8).fill(200));
  const jobIds = responses.map((r) => r.body.job_id as string);
  const references = (await referencesOf()).map((r) => r.job_id);
  if (deleteResponse!.status === 200) {
    expect(references).toEqual([]);
    return { wasDeleted: true, jobIds, named: [] as string[], references };
  }
  const named = expectError(deleteResponse!, 409, "CONFLICT", false).data.job_ids as string[];
  expect(named.length).toBeGreaterThan(0);
  for (const job of named) expect(jobIds).toContain(job);
  return { wasDeleted: false, jobIds, named, references };
}

describe("credentials", () => {
  test("concurrent creates of one name: one 200, the rest 409 (name taken), one row", async () => {
    const name = uniqueName("racecreate");
    const responses = await race(RACERS, (i) => server.post("/v1/credentials/create", { name, value: `value-${i}` }));
    expect(statusesOf(responses)).toEqual([200, ...Array(RACERS - 1).fill(409)]);
    for (const refused of responses.filter((r) => r.status === 409)) {
      expect(expectError(refused, 409, "CONFLICT", false).message).toContain(`A credential named "${name}" already exists.`);
    }
    const rows = await server.db.selectFrom("credentials").select(["id", "version"]).where("name", "=", name).execute();
    expect(rows).toEqual([{ id: responses.find((r) => r.status === 200)!.body.credential_id, version: 1 }]);
    // The winner's value is the one stored, and it opens.
    const winner = responses.findIndex((r) => r.status === 200);
    expect(expectOk(await server.post("/v1/credentials/get", { name }), false).value).toBe(`value-${winner}`);
  });

  test("concurrent upserts of one new name: every one a 200, one creates, the others overwrite in turn", async () => {
    const name = uniqueName("raceupsert");
    const responses = await race(RACERS, (i) => server.post("/v1/credentials/upsert", { name, value: `value-${i}` }));
    expect(statusesOf(responses)).toEqual(Array(RACERS).fill(200));
    expect(responses.filter((r) => r.body.overwritten === false).length).toBe(1);
    expect(new Set(responses.map((r) => r.body.credential_id)).size).toBe(1);
    // Each upsert saw the one before it: the versions count every write.
    const rows = await server.db.selectFrom("credentials").select(["version"]).where("name", "=", name).execute();
    expect(rows).toEqual([{ version: RACERS }]);
    const value = expectOk(await server.post("/v1/credentials/get", { name }), false).value;
    expect(Array.from({ length: RACERS }, (_, i) => `value-${i}`)).toContain(value);
  });

  test("concurrent deletes of one credential: one 200, the rest 404", async () => {
    const name = uniqueName("racedelete");
    const id = expectOk(await server.post("/v1/credentials/create", { name, value: "v" }), false).credential_id;
    const responses = await race(RACERS, () => server.post("/v1/credentials/delete", { id }));
    expect(statusesOf(responses)).toEqual([200, ...Array(RACERS - 1).fill(404)]);
    expect(await server.db.selectFrom("credentials").select("id").where("id", "=", id).execute()).toEqual([]);
  });

  test("renames racing creates of the same name: one name, one row, never a 500", async () => {
    for (let round = 0; round < 5; round++) {
      const target = uniqueName("racerename");
      const ids: string[] = [];
      for (let i = 0; i < RACERS / 2; i++) ids.push(expectOk(await server.post("/v1/credentials/create", { name: uniqueName("src"), value: "v" }), false).credential_id);
      const responses = await Promise.all([
        ...ids.map((id) => server.post("/v1/credentials/update", { id, name: target })),
        ...ids.map(() => server.post("/v1/credentials/create", { name: target, value: "v" })),
      ]);
      expect(statusesOf(responses)).toEqual([200, ...Array(responses.length - 1).fill(409)]);
      expect((await server.db.selectFrom("credentials").select("id").where("name", "=", target).execute()).length).toBe(1);
    }
  });

  test("deletes racing jobs/create of a workflow that uses the credential: a delete sees the job's reference or the job none", async () => {
    let refused = 0;
    let deleted = 0;
    for (let round = 0; round < 30 && (round < 5 || refused === 0 || deleted === 0); round++) {
      const id = expectOk(await server.post("/v1/credentials/create", { name: "token", value: "v" }), false).credential_id;
      const { wasDeleted, jobIds } = await deleteAmidJobCreates(
        "uses-token",
        () => server.post("/v1/credentials/delete", { id }),
        () => server.db.selectFrom("job_credentials").select("job_id").where("credential_id", "=", id).execute(),
      );
      if (wasDeleted) deleted++;
      else {
        refused++;
        // Cancel this round's jobs, then the credential goes.
        for (const job of jobIds) await server.post("/v1/jobs/cancel", { id: job });
        expectOk(await server.post("/v1/credentials/delete", { id }), false);
      }
      for (const job of jobIds) await server.post("/v1/jobs/cancel", { id: job });
    }
    // No reference outlives its credential.
    const dangling = await server.db
      .selectFrom("job_credentials")
      .leftJoin("credentials", "credentials.id", "job_credentials.credential_id")
      .select("job_credentials.job_id")
      .where("credentials.id", "is", null)
      .execute();
    expect(dangling).toEqual([]);
    expect(refused + deleted).toBeGreaterThan(0);
  });
});

describe("browser profiles", () => {
  test("concurrent ensures and uploads of one new name make one profile, and versions never repeat", async () => {
    const name = uniqueName("raceprofile");
    const ensures = await race(RACERS, () => server.post("/v1/browserProfiles/ensure", { name }));
    expect(statusesOf(ensures)).toEqual(Array(RACERS).fill(200));
    expect(new Set(ensures.map((r) => JSON.stringify(r.body))).size).toBeGreaterThan(0);
    const uploads = await race(RACERS, (i) => server.post("/v1/browserProfiles/upload", { name, state: { cookies: [], origins: [{ origin: `https://${i}.example.com`, localStorage: [] }] } }));
    expect(statusesOf(uploads)).toEqual(Array(RACERS).fill(200));
    const rows = await server.db.selectFrom("browser_profiles").select(["id", "version"]).where("name", "=", name).where("tenant_id", "=", server.tenants.alpha).execute();
    expect(rows.length).toBe(1);
    expect(rows[0]!.version).toBe(RACERS);
    const second = await race(RACERS, () => server.post("/v1/browserProfiles/upload", { name: uniqueName("fresh"), state: { cookies: [] } }));
    expect(statusesOf(second)).toEqual(Array(RACERS).fill(200));
  });

  test("a profile delete racing job creations with its authProfile: refused while a job holds it, never a reference to a deleted profile", async () => {
    let refused = 0;
    let deleted = 0;
    for (let round = 0; round < 30 && (round < 5 || refused === 0 || deleted === 0); round++) {
      expectOk(await server.post("/v1/browserProfiles/upload", { name: "portal", state: { cookies: [] } }), false);
      const profile = await server.db.selectFrom("browser_profiles").select("id").where("tenant_id", "=", server.tenants.alpha).where("name", "=", "portal").executeTakeFirstOrThrow();
      const { wasDeleted, jobIds, named, references } = await deleteAmidJobCreates(
        "uses-portal",
        () => server.post("/v1/browserProfiles/delete", { name: "portal" }),
        () => server.db.selectFrom("job_profiles").select("job_id").where("profile_id", "=", profile.id).execute(),
      );
      if (wasDeleted) deleted++;
      else {
        refused++;
        // The jobs it named hold the profile (and so may jobs queued after the refusal).
        for (const job of named) expect(references).toContain(job);
      }
      for (const job of jobIds) expectOk(await server.post("/v1/jobs/cancel", { id: job }), false);
      if (!wasDeleted) expectOk(await server.post("/v1/browserProfiles/delete", { name: "portal" }), false);
    }
    const dangling = await server.db
      .selectFrom("job_profiles")
      .leftJoin("browser_profiles", "browser_profiles.id", "job_profiles.profile_id")
      .select("job_profiles.job_id")
      .where("browser_profiles.id", "is", null)
      .execute();
    expect(dangling).toEqual([]);
    // On PostgreSQL both outcomes happen: the race was real (SQLite, one
    // writer at a time, may settle every round the same way).
    if (isPostgres(server.db)) {
      expect(refused).toBeGreaterThan(0);
      expect(deleted).toBeGreaterThan(0);
    }
  });
});

describe("schedules", () => {
  test("concurrent triggers of a schedule with overlap_policy skip: one job, the rest 409", async () => {
    const schedule = expectOk(await server.post("/v1/schedules/create", { workflow: "plain", cron_expr: "0 9 * * *", overlap_policy: "skip" }), false).schedule;
    const responses = await race(RACERS, () => server.post("/v1/schedules/trigger", { id: schedule.id }));
    expect(statusesOf(responses)).toEqual([200, ...Array(RACERS - 1).fill(409)]);
    const jobs = await server.db.selectFrom("jobs").select("id").where("schedule_id", "=", schedule.id).execute();
    expect(jobs.length).toBe(1);
    for (const refused of responses.filter((r) => r.status === 409)) expect(refused.body.data.job_id).toBe(jobs[0]!.id);
    expectOk(await server.post("/v1/jobs/cancel", { id: jobs[0]!.id }), false);
  });

  test("concurrent edits of different fields of one schedule all stick", async () => {
    const schedule = expectOk(await server.post("/v1/schedules/create", { workflow: "plain", cron_expr: "0 9 * * *" }), false).schedule;
    const responses = await Promise.all([
      server.post("/v1/schedules/update", { id: schedule.id, start_url: "https://start.example.com/" }),
      server.post("/v1/schedules/update", { id: schedule.id, viewport: { width: 800, height: 600 } }),
      server.post("/v1/schedules/update", { id: schedule.id, gpu: true }),
      server.post("/v1/schedules/update", { id: schedule.id, timeout_seconds: 42 }),
    ]);
    expect(statusesOf(responses)).toEqual([200, 200, 200, 200]);
    const stored = expectOk(await server.post("/v1/schedules/get", { id: schedule.id }), false).schedule;
    expect(stored.timeout_seconds).toBe(42);
    // The run options are one JSON column, rewritten whole by each edit: none may undo another.
    const row = await server.db.selectFrom("schedules").select("options").where("id", "=", schedule.id).executeTakeFirstOrThrow();
    expect(JSON.parse(row.options)).toMatchObject({ start_url: "https://start.example.com/", viewport: { width: 800, height: 600 }, gpu: true });
  });

  test("a trigger racing the schedule's delete: a job and a 200, or a 404; never a 500", async () => {
    for (let round = 0; round < 10; round++) {
      const schedule = expectOk(await server.post("/v1/schedules/create", { workflow: "plain", cron_expr: "0 9 * * *", overlap_policy: "allow" }), false).schedule;
      const [trigger, removal] = await Promise.all([
        server.post("/v1/schedules/trigger", { id: schedule.id }),
        server.post("/v1/schedules/delete", { id: schedule.id }),
      ]);
      expect([200, 404]).toContain(trigger.status);
      expect(removal.status).toBe(200);
      if (trigger.status === 200) expectOk(await server.post("/v1/jobs/cancel", { id: trigger.body.job_id }), false);
    }
  });
});

describe("webhook endpoints", () => {
  test("concurrent deletes of one endpoint: one 200, the rest 404; concurrent updates all land", async () => {
    const created = expectOk(await server.post("/v1/webhooks/create", { url: "https://hooks.example.com/a" }), false);
    const id = created.webhook_endpoint_id;
    const updates = await Promise.all([
      server.post("/v1/webhooks/update", { id, description: "first" }),
      server.post("/v1/webhooks/update", { id, url: "https://hooks.example.com/b" }),
    ]);
    expect(statusesOf(updates)).toEqual([200, 200]);
    const deletes = await race(RACERS, () => server.post("/v1/webhooks/delete", { id }));
    expect(statusesOf(deletes)).toEqual([200, ...Array(RACERS - 1).fill(404)]);
  });
});
