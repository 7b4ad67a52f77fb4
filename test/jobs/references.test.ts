/**
 * A job's references to the credentials it will use (API.md): they block
 * deletion from creation until the job ends, however it ends, and a race of
 * deletes against job creations never lets a job use a deleted credential.
 */
import { flushAuditEvents } from "../../src/audit/store";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { workflow } from "../../src/workflows/define";
import { addTenant, startTestServer, uniqueName, type TestServer } from "../helpers";
import { expectError, expectOk } from "../http/wire";
import { createJob, FAST_ENV, gate, referencesOf, waitForEnd, waitForRunning } from "./support";

/** Gates the "hold" handler waits on, by the params.gate the test gives. */
const gates = new Map<string, ReturnType<typeof gate>>();

const hold = workflow("hold", {
  credentials: ["token"],
  async handler(ctx, input: { gate?: string; fail?: boolean; ignoreSignal?: boolean; credentials?: { token: string } }) {
    if (input.fail) throw new Error("the portal rejected the login");
    if (input.ignoreSignal) await new Promise(() => {});
    if (input.gate) await gates.get(input.gate)!.promise;
    return { had_token: input.credentials?.token !== undefined };
  },
});

function newGate(): string {
  const name = uniqueName("gate");
  gates.set(name, gate());
  return name;
}

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({ workflows: [hold], env: FAST_ENV });
});
afterAll(async () => {
  for (const g of gates.values()) g.open();
  await server.close();
});

/** A fresh tenant with a stored "token" credential. */
async function tenantWithToken(on: TestServer = server) {
  const tenant = await addTenant(on, uniqueName("tenant"));
  const value = `tok-${crypto.randomUUID()}`;
  const output = expectOk(await on.post("/v1/credentials/create", { name: "token", value }, { key: tenant.key }), false);
  const deleteToken = () => on.post("/v1/credentials/delete", { id: output.credential_id }, { key: tenant.key });
  return { ...tenant, credentialId: output.credential_id as string, deleteToken };
}

function expectRefused(response: Awaited<ReturnType<TestServer["post"]>>, jobIds: string[]) {
  const error = expectError(response, 409, "CONFLICT", false);
  expect(error.message).toContain(jobIds.length === 1 ? "1 queued or running job" : `${jobIds.length} queued or running jobs`);
  expect(error.message).toContain("/v1/jobs/cancel");
  expect(error.data.job_ids).toEqual([...jobIds].sort());
}

describe("a referenced credential cannot be deleted", () => {
  test("while a job is queued: 409 naming the job(s); once they are cancelled, delete succeeds", async () => {
    const paused = await startTestServer({ workflows: [hold], runnerPaused: true, env: FAST_ENV });
    try {
      const t = await tenantWithToken(paused);
      const first = await createJob(paused, { workflow: "hold" }, t.key);
      expect((await referencesOf(paused, first)).map((r) => r.credential_id)).toEqual([t.credentialId]);
      expectRefused(await t.deleteToken(), [first]);
      const second = await createJob(paused, { workflow: "hold" }, t.key);
      expectRefused(await t.deleteToken(), [first, second]);

      expectOk(await paused.post("/v1/jobs/cancel", { id: first }, { key: t.key }), false);
      expectRefused(await t.deleteToken(), [second]);
      expectOk(await paused.post("/v1/jobs/cancel", { id: second }, { key: t.key }), false);
      expect(await referencesOf(paused, first)).toEqual([]);
      expect(await referencesOf(paused, second)).toEqual([]);
      expectOk(await t.deleteToken(), false);
    } finally {
      await paused.close();
    }
  });

  test("while a job is running; once it completed, delete succeeds", async () => {
    const t = await tenantWithToken();
    const g = newGate();
    const id = await createJob(server, { workflow: "hold", params: { gate: g } }, t.key);
    await waitForRunning(server, id, t.key);
    expectRefused(await t.deleteToken(), [id]);
    gates.get(g)!.open();
    const job = await waitForEnd(server, id, t.key);
    expect(job.status).toBe("completed");
    expect(job.result).toEqual({ had_token: true });
    expect(await referencesOf(server, id)).toEqual([]);
    expectOk(await t.deleteToken(), false);
  });

  test("once its job failed, delete succeeds", async () => {
    const t = await tenantWithToken();
    const id = await createJob(server, { workflow: "hold", params: { fail: true } }, t.key);
    const job = await waitForEnd(server, id, t.key);
    expect(job.status).toBe("failed");
    expect(job.failure_class).toBe("error");
    expect(await referencesOf(server, id)).toEqual([]);
    expectOk(await t.deleteToken(), false);
  });

  test("once its running job was cancelled, delete succeeds", async () => {
    const t = await tenantWithToken();
    const g = newGate();
    const id = await createJob(server, { workflow: "hold", params: { gate: g } }, t.key);
    await waitForRunning(server, id, t.key);
    expectRefused(await t.deleteToken(), [id]);
    expectOk(await server.post("/v1/jobs/cancel", { id }, { key: t.key }), false);
    const job = await waitForEnd(server, id, t.key);
    expect(job.status).toBe("cancelled");
    expect(await referencesOf(server, id)).toEqual([]);
    expectOk(await t.deleteToken(), false);
  });

  test("once its job timed out (its handler still stuck), delete succeeds", async () => {
    const t = await tenantWithToken();
    const id = await createJob(server, { workflow: "hold", params: { ignoreSignal: true }, timeout_seconds: 1 }, t.key);
    await waitForRunning(server, id, t.key);
    expectRefused(await t.deleteToken(), [id]);
    const job = await waitForEnd(server, id, t.key);
    expect(job.status).toBe("failed");
    expect(job.failure_class).toBe("timeout");
    expect(await referencesOf(server, id)).toEqual([]);
    expectOk(await t.deleteToken(), false);
  });

  test("a job whose caller gave the value holds no reference to the stored one", async () => {
    const t = await tenantWithToken();
    const g = newGate();
    const id = await createJob(server, { workflow: "hold", params: { gate: g, credentials: { token: "given-by-caller" } } }, t.key);
    await waitForRunning(server, id, t.key);
    expect(await referencesOf(server, id)).toEqual([]);
    expectOk(await t.deleteToken(), false);
    gates.get(g)!.open();
    expect((await waitForEnd(server, id, t.key)).result).toEqual({ had_token: true });
  });
});

describe("deletes racing job creations", () => {
  test("no job gets a credential deleted before it was claimed, and no reference is left behind", async () => {
    const seen: { job: string; value: string | undefined; at: number; endAt?: number }[] = [];
    const racer = await startTestServer({
      workflows: [
        workflow("race", {
          credentials: ["token"],
          async handler(ctx, input: { credentials?: { token: string } }) {
            const run: (typeof seen)[number] = { job: ctx.session, value: input.credentials?.token, at: performance.now() };
            seen.push(run);
            await new Promise((resolve) => setTimeout(resolve, 2));
            run.endAt = performance.now();
            return { ok: true };
          },
        }),
      ],
      env: { ...FAST_ENV, UNDERSTUDY_CONCURRENCY: "2" },
    });
    try {
      // At least MIN_ROUNDS, and more (bounded) until the race did happen: a
      // delete was refused and a job had the value. Which request of a round
      // gets to the database first is up to the scheduler of each engine.
      const MIN_ROUNDS = 5;
      const MAX_ROUNDS = 40;
      const PER_ROUND = 10;
      const credentials: { id: string; value: string; deletedAt?: number }[] = [];
      const jobs: { id: string; sentAt: number }[] = [];
      const statuses: number[] = [];
      const refusedJobIds: string[] = [];

      const deleteAttempt = async (credential: (typeof credentials)[number]) => {
        const response = await racer.post("/v1/credentials/delete", { id: credential.id });
        statuses.push(response.status);
        if (response.status === 200) {
          expect(credential.deletedAt).toBeUndefined();
          credential.deletedAt = performance.now();
        } else if (response.status === 409) {
          expect(response.body.data.job_ids.length).toBeGreaterThan(0);
          refusedJobIds.push(...response.body.data.job_ids);
        } else {
          // Another delete of the same credential won.
          expect(response.status).toBe(404);
        }
      };
      const createAttempt = async () => {
        const sentAt = performance.now();
        const id = await createJob(racer, { workflow: "race" });
        jobs.push({ id, sentAt });
      };

      let rounds = 0;
      const raced = () => statuses.includes(409) && seen.some((run) => run.value !== undefined);
      for (let round = 0; round < MIN_ROUNDS || (round < MAX_ROUNDS && !raced()); round++) {
        rounds++;
        const value = `race-${round}-${crypto.randomUUID()}`;
        const created = expectOk(await racer.post("/v1/credentials/create", { name: "token", value }), false);
        const credential: (typeof credentials)[number] = { id: created.credential_id as string, value };
        credentials.push(credential);
        await Promise.all(
          Array.from({ length: PER_ROUND }, (_, i) =>
            i % 2 === 0 ? [createAttempt(), deleteAttempt(credential)] : [deleteAttempt(credential), createAttempt()],
          ).flat(),
        );
        // Before the next round stores "token" again, this one must be gone: it is, once its jobs end.
        for (let i = 0; credential.deletedAt === undefined; i++) {
          if (i > 2000) throw new Error(`credential of round ${round} was never deletable`);
          await deleteAttempt(credential);
          if (credential.deletedAt === undefined) await Bun.sleep(5);
        }
      }

      const ended = await Promise.all(jobs.map((j) => waitForEnd(racer, j.id)));
      expect(ended.map((j) => j.status)).toEqual(jobs.map(() => "completed"));
      expect(seen.length).toBe(jobs.length);

      const byValue = new Map(credentials.map((c) => [c.value, c]));
      const sentAt = new Map(jobs.map((j) => [j.id, j.sentAt]));
      for (const run of seen) {
        if (run.value === undefined) continue;
        const credential = byValue.get(run.value);
        expect(credential).toBeDefined();
        // The delete that succeeded came after this job had the value and
        // was done with it, and no job created after that delete's answer got it.
        expect(run.at).toBeLessThan(credential!.deletedAt!);
        expect(run.endAt!).toBeLessThan(credential!.deletedAt!);
        expect(sentAt.get(run.job)!).toBeLessThan(credential!.deletedAt!);
      }
      for (const credential of credentials) {
        for (const job of jobs.filter((j) => j.sentAt > credential.deletedAt!)) {
          expect(seen.find((s) => s.job === job.id)!.value).not.toBe(credential.value);
        }
      }

      // In the audit trail, too: every injection happened no later than its credential's delete.
      // (Injections are audited in batches, like reads, so their time says when, not their row id.)
      await flushAuditEvents(racer.db);
      const audits = await racer.db.selectFrom("audit_events").selectAll().where("outcome", "=", "success").orderBy("id").execute();
      const deletedAtAudit = new Map(audits.filter((a) => a.action === "credential.delete").map((a) => [a.credential_id, a.at]));
      const injections = audits.filter((a) => a.action === "credential.inject");
      expect(injections.length).toBe(seen.filter((s) => s.value !== undefined).length);
      for (const injection of injections) {
        const deletedAt = deletedAtAudit.get(injection.credential_id);
        if (deletedAt !== undefined) expect(injection.at <= deletedAt).toBe(true);
      }

      // Every refusal named real jobs of ours; nothing is left referenced, queued or running.
      const ours = new Set(jobs.map((j) => j.id));
      for (const id of refusedJobIds) expect(ours.has(id)).toBe(true);
      expect(await racer.db.selectFrom("job_credentials").selectAll().execute()).toEqual([]);
      expect(await racer.db.selectFrom("jobs").select("id").where("status", "in", ["queued", "running", "starting_browser"]).execute()).toEqual([]);

      // The race did happen: some deletes were refused and some jobs had the value.
      expect(statuses).toContain(409);
      expect(injections.length).toBeGreaterThan(0);
      expect(jobs.length).toBe(rounds * PER_ROUND);
    } finally {
      await racer.close();
    }
  });
});
