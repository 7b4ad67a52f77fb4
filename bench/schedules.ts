/**
 * `bun run bench/schedules.ts`: how late the scheduler enqueues when many
 * schedules come due at the same instant.
 *
 * A fresh database file (WAL, as served) holds N enabled schedules, all
 * firing every minute ("* * * * *", spread over five time zones including
 * Lord Howe's half-hour offset), across T tenants, of a workflow that
 * declares one credential each tenant has stored, so every fire takes a
 * credential reference as a real job does; one schedule in ten also carries
 * sealed params.credentials and a callback secret, which each fire opens and
 * seals anew for its job. The Scheduler runs on its own timer, as in the
 * server, with no HTTP server and a runner that runs nothing (this measures
 * enqueueing, not running). Its clock is the system clock shifted so that a
 * whole minute is 1.5 s away, and shifted again before each further round.
 *
 * Lag = a job's created_at minus the due time it was fired for (whole
 * milliseconds, the same clock). Printed per round and over all rounds: p50,
 * p99 and max, with how long each round's tick took. The target is every job
 * within one second of its time.
 *
 * Options: --schedules N (10000) --tenants T (10) --rounds R (3) --tick-ms MS (1000)
 *          --ids v7|v4 (v7, as the server: time-ordered UUIDs, whose index
 *          inserts stay local; v4 is the what-if of random ids).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { randomId, type Clock } from "../src/clock";
import { loadConfig } from "../src/config";
import { memoryLogger } from "../src/log";
import { nextFireAfter } from "../src/schedules/cron";
import { Scheduler, callbackSecretContext, paramsCredentialsContext } from "../src/schedules/scheduler";
import { insertSchedule, type ScheduleRow } from "../src/schedules/store";
import { openStore } from "../src/server/start";
import { createTenant } from "../src/tenants/service";
import { generateMasterKey, toMasterKey } from "../src/vault/master-key";
import { workflow } from "../src/workflows/define";
import { WorkflowCatalog } from "../src/workflows/catalog";
import { WorkflowRegistry } from "../src/workflows/registry";

const { values: args } = parseArgs({
  options: {
    schedules: { type: "string", default: "10000" },
    tenants: { type: "string", default: "10" },
    rounds: { type: "string", default: "3" },
    "tick-ms": { type: "string", default: "1000" },
    ids: { type: "string", default: "v7" },
  },
});
const SCHEDULES = Number(args.schedules);
const TENANTS = Number(args.tenants);
const ROUNDS = Number(args.rounds);
const TICK_MS = Number(args["tick-ms"]);
if (args.ids !== "v4" && args.ids !== "v7") throw new Error(`--ids must be v4 or v7, got ${args.ids}`);
const newJobId = args.ids === "v7" ? randomId : () => crypto.randomUUID();
const ZONES = ["UTC", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "Asia/Kolkata"];
const LEAD_MS = 1500;

/** The system clock, shifted by an amount the benchmark moves. */
function shiftedClock(): Clock & { shiftTo(iso: number): void } {
  let shift = 0;
  return {
    now: () => new Date(Date.now() + shift),
    shiftTo: (at) => void (shift = at - Date.now()),
  };
}

function percentiles(values: number[]) {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (p: number) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
  return { p50: at(50), p99: at(99), max: sorted[sorted.length - 1]!, n: sorted.length };
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), "understudy-bench-schedules-"));
  const config = loadConfig({ UNDERSTUDY_SCHEDULER_TICK_MS: String(TICK_MS) });
  const clock = shiftedClock();
  const key = toMasterKey(new Uint8Array(Buffer.from(generateMasterKey(), "base64")));
  const store = await openStore(config, join(dir, "bench.db"), { current: key }, clock);
  const log = memoryLogger();
  try {
    const workflows = WorkflowRegistry.fromDefinitions([workflow("bench-scheduled", { credentials: ["token"], handler: () => null })], log);

    // Seed: tenants with a stored credential of the declared name, then the schedules.
    const seedStarted = performance.now();
    const tenants: string[] = [];
    for (let t = 0; t < TENANTS; t++) {
      const tenant = await createTenant(store.db, clock, randomId, `bench-${t}`);
      const sealed = await store.vault.sealForTenant(store.db, tenant.id, "bench/credential", "stored-token-value");
      const at = clock.now().toISOString();
      await store.db
        .insertInto("credentials")
        .values({ id: randomId(), tenant_id: tenant.id, name: "token", sealed_value: sealed, version: 1, created_at: at, updated_at: at })
        .execute();
      tenants.push(tenant.id);
    }
    const createdAt = clock.now();
    const due = nextFireAfter("* * * * *", "UTC", createdAt)!.toISOString();
    await store.db.transaction().execute(async (trx) => {
      for (let i = 0; i < SCHEDULES; i++) {
        const id = randomId();
        const tenantId = tenants[i % TENANTS]!;
        const withSecrets = i % 10 === 0;
        const row: ScheduleRow = {
          id,
          tenant_id: tenantId,
          workflow: "bench-scheduled",
          params: JSON.stringify({ account: i, region: "eu" }),
          sealed_params_credentials: withSecrets
            ? await store.vault.sealForTenant(trx, tenantId, paramsCredentialsContext(id), JSON.stringify({ token: `caller-token-${i}` }))
            : null,
          cron_expr: "* * * * *",
          timezone: ZONES[i % ZONES.length]!,
          timeout_seconds: 900,
          options: JSON.stringify({ start_url: "https://portal.example.com/" }),
          callback_url: withSecrets ? "https://hooks.example.com/done" : null,
          sealed_callback_secret: withSecrets ? await store.vault.sealForTenant(trx, tenantId, callbackSecretContext(id), `cb-${i}`) : null,
          skip_callbacks: 0,
          enabled: 1,
          // Jobs are not run here, so "skip" would hold every later round back.
          overlap_policy: "allow",
          next_fire_at: due,
          last_fire_at: null,
          last_job_id: null,
          last_error: null,
          consecutive_failures: 0,
          created_at: createdAt.toISOString(),
          updated_at: createdAt.toISOString(),
        };
        await insertSchedule(trx, row);
      }
    });
    console.log(
      `seeded ${SCHEDULES} schedules over ${TENANTS} tenants in ${Math.round(performance.now() - seedStarted)} ms; tick ${TICK_MS} ms; job ids ${args.ids}`,
    );

    const scheduler = new Scheduler({
      db: store.db,
      vault: store.vault,
      clock,
      newId: newJobId,
      log,
      catalog: new WorkflowCatalog(workflows, join(dir, "deployments")),
      runner: { wake() {}, cancel: () => false },
      config,
    });
    const all: number[] = [];
    const rounds: unknown[] = [];
    let dueMs = Date.parse(due);
    for (let round = 1; round <= ROUNDS; round++) {
      clock.shiftTo(dueMs - LEAD_MS);
      const dueIso = new Date(dueMs).toISOString();
      const logged = log.lines.length;
      if (round === 1) scheduler.start();
      // Wait (bounded) for the tick's log line; the database is read once after,
      // so the benchmark's own queries do not compete with the scheduler.
      const deadline = performance.now() + LEAD_MS + 30_000;
      const fired = () => log.lines.slice(logged).some((line) => line.includes('"msg":"schedules fired"'));
      while (!fired()) {
        if (performance.now() > deadline) throw new Error(`round ${round}: the scheduler did not fire within 30 s`);
        await Bun.sleep(50);
      }
      const jobs = await store.db.selectFrom("jobs").select("created_at").where("created_at", ">=", dueIso).execute();
      if (jobs.length !== SCHEDULES) throw new Error(`round ${round}: ${jobs.length} jobs for ${SCHEDULES} schedules`);
      const lags = jobs.map((j) => Date.parse(j.created_at) - dueMs);
      all.push(...lags);
      const tick = log.lines
        .slice(logged)
        .map((line) => JSON.parse(line))
        .find((entry) => entry.msg === "schedules fired");
      const figures = { round, due: dueIso, lagMs: percentiles(lags), tickMs: tick?.duration_ms, fired: tick?.fired };
      rounds.push(figures);
      console.log(JSON.stringify(figures));
      dueMs += 60_000;
    }
    await scheduler.stop();
    const overall = percentiles(all);
    console.log(JSON.stringify({ overall: { lagMs: overall }, withinOneSecond: overall.max < 1000 }));
    const errors = log.lines.filter((line) => line.includes('"level":"error"') || line.includes('"level":"warn"'));
    if (errors.length > 0) throw new Error(`the scheduler logged problems:\n${errors.slice(0, 5).join("")}`);
  } finally {
    await store.db.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
