/**
 * The runner must not hold the event loop while it drains a backlog: the
 * database driver is synchronous, so without a turn of the event loop per
 * claim, requests would wait for the whole queue.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { workflow } from "../../src/workflows/define";
import { startTestServer, type TestServer } from "../helpers";

let server: TestServer;
const noop = workflow("backlog-noop", async () => null);

beforeAll(async () => {
  server = await startTestServer({ workflows: [noop], runnerPaused: true });
});
afterAll(async () => server.close());

test("while 1,500 queued jobs drain, a cancel of the last one still finds it queued", async () => {
  const ids: string[] = [];
  for (let i = 0; i < 1500; i++) {
    const created = await server.post("/v1/jobs/create", { workflow: "backlog-noop" });
    expect(created.status).toBe(200);
    ids.push(created.body.job_id);
  }
  server.runner.start();
  // The runner now works through the queue; these requests are answered in
  // between its claims, long before it reaches the last job.
  expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
  const cancelled = await server.post("/v1/jobs/cancel", { id: ids.at(-1) });
  expect(cancelled.status).toBe(200);
  expect(cancelled.body.message).toContain("cancelled");
  expect((await server.post("/v1/jobs/get", { id: ids.at(-1) })).body.status).toBe("cancelled");

  // And the rest still all complete (bounded: a minute, for a loaded machine).
  for (let i = 0; i < 2400; i++) {
    const queued = await server.post("/v1/jobs/list", { status: "queued", limit: 1 });
    const running = await server.post("/v1/jobs/list", { status: "running", limit: 1 });
    if (queued.body.jobs.length === 0 && running.body.jobs.length === 0) break;
    await Bun.sleep(25);
  }
  const completed = await server.db.selectFrom("jobs").select((eb) => eb.fn.countAll<number>().as("n")).where("status", "=", "completed").executeTakeFirst();
  expect(Number(completed?.n)).toBe(1499);
}, 120_000);
