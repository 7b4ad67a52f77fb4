/**
 * Races across instances: the same requests sent at once to 3 `understudy
 * serve` processes on one PostgreSQL schema must end as they would in some
 * serial order, with one row where there must be one.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { randomId, systemClock } from "../../src/clock";
import { openStoredValue } from "../../src/credentials/service";
import { createApiKey, createTenant } from "../../src/tenants/service";
import { uploadBase64 } from "../deployments/upload";
import { uniqueName } from "../helpers";
import { postJson } from "../process-helpers";
import { describeWithPostgres, startCluster, type Cluster } from "./cluster";

const PER_INSTANCE = 4;

describeWithPostgres("racing requests across 3 instances", () => {
  let cluster: Cluster;
  beforeAll(async () => {
    cluster = await startCluster({ instances: 3, workflowsDir: join(import.meta.dir, "..", "fixtures", "worker-workflows") });
  }, 60_000);
  afterAll(async () => cluster?.close());

  /** Each instance gets PER_INSTANCE copies of a request, all sent at once. */
  const everywhere = (send: (url: string, i: number) => ReturnType<typeof postJson>) =>
    Promise.all(cluster.instances.flatMap((instance, n) => Array.from({ length: PER_INSTANCE }, (_, i) => send(instance.url, n * PER_INSTANCE + i))));

  test("creates of one credential name through every instance: one 200, the rest 409, one row", async () => {
    for (let round = 0; round < 3; round++) {
      const name = uniqueName("clusterrace");
      const responses = await everywhere((url, i) => postJson(url, "/v1/credentials/create", cluster.keys.alpha, { name, value: `value-${i}` }));
      const statuses = responses.map((r) => r.status).sort();
      expect(statuses).toEqual([200, ...Array(responses.length - 1).fill(409)]);
      for (const refused of responses.filter((r) => r.status === 409)) expect(refused.body.message).toContain(`A credential named "${name}" already exists.`);
      const rows = await cluster.store.db.selectFrom("credentials").select("id").where("name", "=", name).execute();
      expect(rows).toEqual([{ id: responses.find((r) => r.status === 200)!.body.credential_id }]);
    }
  }, 60_000);

  test("deploys through every instance at once each get their own version (1..n), never a 500", async () => {
    const source = await uploadBase64({ workflows: [{ name: "raced", body: "return { ok: true };" }] });
    const responses = await everywhere((url) => postJson(url, "/v1/deployments/create", cluster.keys.beta, { source, entry_point: "index.js" }));
    expect(responses.map((r) => r.status)).toEqual(responses.map(() => 200));
    const versions = responses.map((r) => r.body.deployment_version as number).sort((a, b) => a - b);
    expect(versions).toEqual(responses.map((_, i) => i + 1));
  }, 60_000);

  test("a new tenant's first writes, through every instance at once, make one data key that every instance uses", async () => {
    for (let round = 0; round < 4; round++) {
      const tenant = await createTenant(cluster.store.db, systemClock, randomId, uniqueName("fresh"));
      const { key } = await createApiKey(cluster.store.db, systemClock, randomId, tenant.id);
      // Every write seals: each instance makes the tenant's data key unless another did first.
      const responses = await everywhere((url, i) =>
        i % 2 === 0
          ? postJson(url, "/v1/credentials/create", key, { name: `cred_${i}`, value: `secret-${round}-${i}` })
          : postJson(url, "/v1/credentials/create", key, { name: "same_name", value: `secret-${round}-${i}` }),
      );
      expect(responses.filter((r) => r.status !== 200 && r.status !== 409)).toEqual([]);
      expect(responses.filter((r) => r.status === 200).length).toBe(responses.length / 2 + 1);
      const keys = await cluster.store.db.selectFrom("tenant_keys").select("tenant_id").where("tenant_id", "=", tenant.id).execute();
      expect(keys.length).toBe(1);
      // Every value opens through every instance (each holds the key it sealed with: the same one) ...
      const stored = await cluster.store.db.selectFrom("credentials").select("name").where("tenant_id", "=", tenant.id).execute();
      expect(stored.length).toBe(responses.length / 2 + 1);
      for (const instance of cluster.instances) {
        for (const { name } of stored) {
          const read = await postJson(instance.url, "/v1/credentials/get", key, { name });
          expect(read.status).toBe(200);
          expect(read.body.value).toStartWith(`secret-${round}-`);
        }
      }
      // ... and through a process that only has the database: the key is the stored one.
      for (const { name } of stored) {
        const row = await cluster.store.db.selectFrom("credentials").selectAll().where("tenant_id", "=", tenant.id).where("name", "=", name).executeTakeFirstOrThrow();
        expect(await openStoredValue(cluster.store, cluster.store.db, tenant.id, row)).toStartWith(`secret-${round}-`);
      }
    }
  }, 120_000);
});
