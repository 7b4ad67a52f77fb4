/**
 * Retry timing with an injected clock: the server's clock only moves when
 * the test moves it, so a Retry-After of minutes or an hour is checked
 * without waiting for it. The delay is max(schedule, Retry-After), with
 * Retry-After honoured on 429 and 503 only and cut to one hour.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { workflow } from "../../src/workflows/define";
import { addTenant, manualClock, startTestServer, uniqueName, type TestServer } from "../helpers";
import { expectError } from "../http/wire";
import { createJob, FAST_ENV, waitForEnd } from "../jobs/support";
import { createEndpoint, startReceiver, waitForDeliveries, type Receiver } from "./support";

const clock = manualClock("2026-01-02T03:04:05.000Z");
let server: TestServer;
const receivers: Receiver[] = [];

beforeAll(async () => {
  server = await startTestServer({
    clock,
    workflows: [workflow("ra-echo", () => ({ ok: true }))],
    env: { ...FAST_ENV, UNDERSTUDY_WEBHOOK_ALLOW_PRIVATE: "1", UNDERSTUDY_WEBHOOK_RETRY_SCHEDULE_MS: "0,20,20,20,20,20" },
  });
});
afterAll(async () => {
  for (const r of receivers) await r.close();
  await server.close();
});

const at = (ms: number) => new Date(Date.parse("2026-01-02T03:04:05.000Z") + ms).toISOString();

test("Retry-After in seconds or as an HTTP date pushes the next attempt back, never before the schedule, and at most an hour", async () => {
  const { key } = await addTenant(server, uniqueName("ra"));
  const replies = [
    { status: 503, headers: { "retry-after": "0" } },
    { status: 503, headers: { "retry-after": "120" } },
    // An HTTP date has whole seconds: 03:11:05 GMT is 420 s after the start, 299.98 s after the third attempt.
    { status: 429, headers: { "retry-after": new Date(at(420_000)).toUTCString() } },
    { status: 500, headers: { "retry-after": "600" } },
    { status: 503, headers: { "retry-after": "86400" } },
    { status: 200 },
  ];
  const r = await startReceiver((_req, i) => replies[i]!);
  receivers.push(r);
  await createEndpoint(server, key, { url: r.url });

  // A second tenant whose deliveries are always due: when its receiver has
  // one, the worker has claimed everything due at that moment, so the first
  // tenant's delivery not arriving then is a fact, not a race.
  const witness = await addTenant(server, uniqueName("ra-witness"));
  const w = await startReceiver();
  receivers.push(w);
  await createEndpoint(server, witness.key, { url: w.url });
  const everythingDueWasClaimed = async () => {
    const seen = w.received.length;
    await waitForEnd(server, await createJob(server, { workflow: "ra-echo" }, witness.key), witness.key);
    await w.waitFor(seen + 1);
  };

  const jobId = await createJob(server, { workflow: "ra-echo" }, key);
  await waitForEnd(server, jobId, key);
  const pendingUntil = async (attempts: number, next: string) => {
    const [d] = await waitForDeliveries(server, key, { job_id: jobId }, (ds) => ds[0]?.attempts === attempts && ds[0]?.status === "pending" && ds[0]?.next_attempt_at === next);
    return d;
  };
  /** Moves the clock to `ms` after the start, wakes the worker, and checks what was sent. */
  const moveTo = async (ms: number, expectSent: number) => {
    clock.advance(Date.parse(at(ms)) - clock.now().getTime());
    server.deps.webhooks.wake();
    if (expectSent > r.received.length) await r.waitFor(expectSent);
    await everythingDueWasClaimed();
    expect(r.received).toHaveLength(expectSent);
  };

  // 1: 503 with Retry-After 0: the schedule's 20 ms wins.
  await r.waitFor(1);
  const first = await pendingUntil(1, at(20));
  expect(first.last_status_code).toBe(503);
  const busy = expectError(await server.post("/v1/webhooks/redeliver", { delivery_id: first.delivery_id }, { key }), 409, "CONFLICT", false);
  expect(busy.message).toContain("still pending");

  // 2: 503 with Retry-After 120 s.
  await moveTo(20, 2);
  await pendingUntil(2, at(20 + 120_000));
  await moveTo(20 + 119_999, 2);

  // 3: 429 with an HTTP date, 03:11:05 GMT.
  await moveTo(20 + 120_000, 3);
  await pendingUntil(3, at(420_000));
  await moveTo(419_999, 3);

  // 4: a 500's Retry-After is not honoured: the schedule's 20 ms.
  await moveTo(420_000, 4);
  await pendingUntil(4, at(420_020));

  // 5: a day's Retry-After is cut to an hour.
  await moveTo(420_020, 5);
  await pendingUntil(5, at(420_020 + 3_600_000));
  await moveTo(420_020 + 3_599_999, 5);

  // 6: delivered, with the same webhook-id as the first attempt.
  await moveTo(420_020 + 3_600_000, 6);
  const [done] = await waitForDeliveries(server, key, { job_id: jobId }, (ds) => ds[0]?.status === "succeeded");
  expect(done).toMatchObject({ attempts: 6, last_status_code: 200, next_attempt_at: null });
  expect(new Set(r.received.map((q) => q.headers["webhook-id"]))).toEqual(new Set([first.delivery_id]));
  // Each attempt is stamped with the (injected) time it was made.
  expect(r.received.map((q) => q.json.delivered_at)).toEqual([
    at(0),
    at(20),
    at(20 + 120_000),
    at(420_000),
    at(420_020),
    at(420_020 + 3_600_000),
  ]);
});
