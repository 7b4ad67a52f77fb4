/**
 * `bun run bench/webhooks.ts`: how many webhook deliveries per second the
 * delivery worker sends to a local receiver.
 *
 * A fresh database file (WAL, as served) holds one tenant with E active
 * endpoints, all pointing at a receiver on 127.0.0.1 that runs in a child
 * process (so it does not share the worker's event loop) and answers 200 at
 * once. N pending deliveries are written as job ends write them (a ~300-byte
 * job.completed payload each), then the DeliveryWorker is started as the
 * server starts it and the clock runs until every delivery has succeeded.
 * Each attempt does what a real one does: opens the endpoint's sealed
 * secret, signs twice (HMAC-SHA256), resolves nothing (literal address),
 * opens a fresh connection, POSTs, reads the answer, and records the
 * attempt in its own transaction.
 *
 * Printed: deliveries per second, the p50/p99 of the recorded attempt
 * durations, and how many requests the receiver saw.
 *
 * Options: --deliveries N (3000) --endpoints E (4) --concurrency C (8) --rounds R (3)
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { randomId, systemClock } from "../src/clock";
import { loadConfig } from "../src/config";
import { memoryLogger } from "../src/log";
import { openStore } from "../src/server/start";
import { createTenant } from "../src/tenants/service";
import { generateMasterKey, toMasterKey } from "../src/vault/master-key";
import { endpointSecretContext, generateSigningSecret } from "../src/webhooks/signing";
import { insertDeliveries, insertEndpoint } from "../src/webhooks/store";
import { DeliveryWorker } from "../src/webhooks/worker";

const { values: args } = parseArgs({
  options: {
    deliveries: { type: "string", default: "3000" },
    endpoints: { type: "string", default: "4" },
    concurrency: { type: "string", default: "8" },
    rounds: { type: "string", default: "3" },
  },
});
const DELIVERIES = Number(args.deliveries);
const ENDPOINTS = Number(args.endpoints);
const CONCURRENCY = Number(args.concurrency);
const ROUNDS = Number(args.rounds);

/** The receiver: a child process answering 200 to every POST, printing its port, and its count on request. */
const RECEIVER = `
const http = require("node:http");
let count = 0;
const server = http.createServer((req, res) => {
  if (req.method === "GET") { res.end(String(count)); return; }
  req.resume();
  req.on("end", () => { count++; res.writeHead(200, { "content-type": "text/plain" }); res.end("ok"); });
});
server.listen(0, "127.0.0.1", () => console.log(server.address().port));
`;

function percentiles(values: number[]) {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (p: number) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
  return { p50: at(50), p99: at(99), max: sorted[sorted.length - 1]! };
}

async function main() {
  const receiver = Bun.spawn([process.execPath, "-e", RECEIVER], { stdout: "pipe", stderr: "inherit" });
  const reader = receiver.stdout.getReader();
  const { value } = await reader.read();
  const port = Number(new TextDecoder().decode(value).trim());
  const receiverUrl = `http://127.0.0.1:${port}`;

  const dir = mkdtempSync(join(tmpdir(), "understudy-bench-webhooks-"));
  const config = loadConfig({ UNDERSTUDY_WEBHOOK_ALLOW_PRIVATE: "1" });
  const key = toMasterKey(new Uint8Array(Buffer.from(generateMasterKey(), "base64")));
  const store = await openStore(config, join(dir, "bench.db"), { current: key }, systemClock);
  const log = memoryLogger();
  try {
    const tenant = await createTenant(store.db, systemClock, randomId, "bench");
    const endpointIds: string[] = [];
    for (let i = 0; i < ENDPOINTS; i++) {
      const id = randomId();
      const at = new Date().toISOString();
      const sealedSecret = await store.vault.sealForTenant(store.db, tenant.id, endpointSecretContext(id), generateSigningSecret());
      await insertEndpoint(store.db, {
        id,
        tenantId: tenant.id,
        url: `${receiverUrl}/hook/${i}`,
        sealedSecret,
        description: null,
        active: true,
        disabledReason: null,
        createdAt: at,
        updatedAt: at,
      });
      endpointIds.push(id);
    }
    console.log(`webhook deliveries: ${DELIVERIES} per round over ${ENDPOINTS} endpoints, concurrency ${CONCURRENCY}, receiver in a child process`);

    const rates: number[] = [];
    for (let round = 1; round <= ROUNDS; round++) {
      const payload = (jobId: string) =>
        JSON.stringify({
          event: "job.completed",
          job_id: jobId,
          nonce: null,
          workflow: "bench",
          deployment_id: "local",
          status: "completed",
          result: { ok: true, items: [1, 2, 3], note: "x".repeat(120) },
          error: null,
          mapped_stack: null,
        });
      const at = new Date().toISOString();
      await store.db.transaction().execute(async (trx) => {
        for (let i = 0; i < DELIVERIES; i += 500) {
          await insertDeliveries(
            trx,
            Array.from({ length: Math.min(500, DELIVERIES - i) }, (_, j) => {
              const jobId = randomId();
              return {
                id: randomId(),
                tenantId: tenant.id,
                jobId,
                endpointId: endpointIds[(i + j) % ENDPOINTS]!,
                url: receiverUrl,
                event: "job.completed",
                payload: payload(jobId),
                at,
              };
            }),
          );
        }
      });

      const worker = new DeliveryWorker({ db: store.db, vault: store.vault, clock: systemClock, newId: randomId, log, config, allowPrivate: true, concurrency: CONCURRENCY });
      const started = performance.now();
      worker.start();
      for (;;) {
        const row = await store.db
          .selectFrom("webhook_deliveries")
          .select((eb) => eb.fn.countAll<number>().as("n"))
          .where("status", "=", "pending")
          .executeTakeFirstOrThrow();
        if (Number(row.n) === 0) break;
        await Bun.sleep(5);
      }
      const seconds = (performance.now() - started) / 1000;
      await worker.stop();
      const outcomes = await store.db
        .selectFrom("webhook_deliveries")
        .select(["status", "last_duration_ms"])
        .where("created_at", "=", at)
        .execute();
      const failed = outcomes.filter((o) => o.status !== "succeeded").length;
      const durations = percentiles(outcomes.map((o) => o.last_duration_ms ?? 0));
      const rate = DELIVERIES / seconds;
      rates.push(rate);
      console.log(
        `  round ${round}: ${Math.round(rate)} deliveries/s (${seconds.toFixed(2)} s), attempt p50 ${durations.p50} ms, p99 ${durations.p99} ms, max ${durations.max} ms` +
          (failed > 0 ? `, ${failed} not succeeded` : ""),
      );
    }
    const seen = Number(await (await fetch(receiverUrl)).text());
    const sorted = [...rates].sort((a, b) => a - b);
    console.log(`median: ${Math.round(sorted[Math.floor(sorted.length / 2)]!)} deliveries/s; the receiver saw ${seen} requests (expected ${DELIVERIES * ROUNDS})`);
  } finally {
    await store.db.destroy();
    rmSync(dir, { recursive: true, force: true });
    receiver.kill();
  }
}

await main();
