/**
 * Helpers of the schedule tests: a real server whose clock the test sets by
 * hand, and a Scheduler over the same database that the test ticks directly
 * (the server's own scheduler sleeps for an hour between looks, so it does
 * not interfere). No test sleeps for time.
 */
import { expect } from "bun:test";
import type { Clock } from "../../src/clock";
import { memoryLogger } from "../../src/log";
import { Scheduler } from "../../src/schedules/scheduler";
import type { WorkflowDefinition } from "../../src/workflows/define";
import { startTestServer, type TestServer } from "../helpers";
import { expectOk } from "../http/wire";
import { FAST_ENV } from "../jobs/support";

/** A clock the test sets to any instant. */
export interface SetClock extends Clock {
  set(iso: string): void;
  advance(ms: number): void;
}

export function setClock(start: string): SetClock {
  let now = Date.parse(start);
  return {
    now: () => new Date(now),
    set: (iso) => void (now = Date.parse(iso)),
    advance: (ms) => void (now += ms),
  };
}

export interface ScheduleHarness {
  server: TestServer;
  clock: SetClock;
  /** A scheduler over the server's database, workflows and runner, ticked by the test. */
  scheduler: Scheduler;
  close(): Promise<void>;
}

const HOUR_MS = "3600000";

export async function scheduleHarness(options: {
  start: string;
  workflows: WorkflowDefinition[];
  /** Default true: jobs stay queued. */
  runnerPaused?: boolean;
}): Promise<ScheduleHarness> {
  const clock = setClock(options.start);
  const server = await startTestServer({
    clock,
    workflows: options.workflows,
    runnerPaused: options.runnerPaused ?? true,
    // The test drives its own scheduler: the server's must not fire the same schedules in between.
    schedulerPaused: true,
    env: { ...FAST_ENV, UNDERSTUDY_SCHEDULER_TICK_MS: HOUR_MS },
  });
  const scheduler = new Scheduler({
    db: server.db,
    vault: server.server.vault,
    clock,
    newId: server.deps.newId,
    log: memoryLogger(),
    catalog: server.deps.catalog,
    runner: server.runner,
    config: { schedules: { tickMs: Number(HOUR_MS) } },
  });
  return { server, clock, scheduler, close: () => server.close() };
}

/** Creates a schedule as the holder of `key` (default alpha) and returns the schedule object. */
export async function createSchedule(server: TestServer, input: Record<string, unknown>, key = server.keys.alpha): Promise<any> {
  return expectOk(await server.post("/v1/schedules/create", input, { key }), false).schedule;
}

export async function getSchedule(server: TestServer, id: string, key = server.keys.alpha): Promise<any> {
  return expectOk(await server.post("/v1/schedules/get", { id }, { key }), false).schedule;
}

/** The jobs a schedule queued, oldest first, as stored. */
export async function jobsOf(server: TestServer, scheduleId: string) {
  return server.db.selectFrom("jobs").selectAll().where("schedule_id", "=", scheduleId).orderBy("seq").execute();
}

export async function expectJobCount(server: TestServer, scheduleId: string, count: number): Promise<void> {
  expect((await jobsOf(server, scheduleId)).length).toBe(count);
}
