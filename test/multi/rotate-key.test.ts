import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { randomId, systemClock } from "../../src/clock";
import { createApiKey, createTenant } from "../../src/tenants/service";
import { masterKeyId } from "../../src/vault/master-key";
import { newMasterKey, tempDir } from "../helpers";
import { rawRows } from "../postgres";
import { postJson, runCliProcess } from "../process-helpers";
import { describeWithPostgres, startCluster, type Cluster } from "./cluster";

/**
 * The README's rotation procedure with instances running: restart them with
 * the new key and the old one as previous, run rotate-key while tenants get
 * their first secrets, then an instance on the new key alone must open
 * everything: no tenant key may be left wrapped by the old master key.
 */
describeWithPostgres("rotate-key while instances run on PostgreSQL", () => {
  let cluster: Cluster;
  const next = newMasterKey();
  beforeAll(async () => {
    cluster = await startCluster({ instances: 0, workflowsDir: join(import.meta.dir, "..", "fixtures", "worker-workflows") });
    // Step 1 of the procedure: every instance holds the new key, and the old one as previous.
    for (let i = 0; i < 2; i++) await cluster.addInstance({ UNDERSTUDY_MASTER_KEY: next.text, UNDERSTUDY_MASTER_KEY_PREVIOUS: cluster.masterKey });
  }, 60_000);
  afterAll(async () => cluster?.close());

  test("tenants created during the rotation end up wrapped by the new key, and an instance without the old key reads every value", async () => {
    const [a, b] = cluster.instances;
    expect((await postJson(a!.url, "/v1/credentials/create", cluster.keys.alpha, { name: "before", value: "v-before" })).status).toBe(200);

    // Tenants whose first secret (hence their data key) is stored while rotate-key runs.
    const tenants: Array<{ name: string; key: string }> = [];
    for (let i = 0; i < 40; i++) {
      const tenant = await createTenant(cluster.store.db, systemClock, randomId, `t${i}`);
      tenants.push({ name: tenant.name, key: (await createApiKey(cluster.store.db, systemClock, randomId, tenant.id)).key });
    }
    const dir = tempDir("understudy-rotate-");
    try {
      const rotations = (async () => {
        const outputs = [];
        // Several runs (it is safe to run again), so that tenant keys are made before, during and after one.
        for (let i = 0; i < 3; i++) {
          outputs.push(
            await runCliProcess(["rotate-key"], {
              cwd: dir.path,
              env: { UNDERSTUDY_DATABASE_URL: cluster.databaseUrl, UNDERSTUDY_MASTER_KEY: next.text, UNDERSTUDY_MASTER_KEY_PREVIOUS: cluster.masterKey },
              timeoutMs: 30_000,
            }),
          );
        }
        return outputs;
      })();
      const creates = tenants.map((t, i) =>
        postJson((i % 2 ? a : b)!.url, "/v1/credentials/create", t.key, { name: "during", value: `v-${t.name}` }),
      );
      const [outputs, created] = await Promise.all([rotations, Promise.all(creates)]);
      for (const out of outputs) expect({ code: out.code, stderr: out.stderr }).toEqual({ code: 0, stderr: expect.stringContaining(`Rotated to master key ${masterKeyId(next.bytes)}`) });
      // Every create succeeded: an instance holding both keys never refuses during a rotation.
      expect(created.map((r) => r.status)).toEqual(tenants.map(() => 200));

      const wraps = await rawRows(cluster.databaseUrl, "SELECT DISTINCT master_key_id FROM tenant_keys");
      expect(wraps).toEqual([{ master_key_id: masterKeyId(next.bytes) }]);
      expect(await rawRows(cluster.databaseUrl, "SELECT master_key_id FROM vault_meta")).toEqual([{ master_key_id: masterKeyId(next.bytes) }]);

      // Step 3: an instance on the new key alone starts (it unwraps every tenant key at start) and reads the values.
      const fresh = await cluster.addInstance({ UNDERSTUDY_MASTER_KEY: next.text });
      const read = await postJson(fresh.url, "/v1/credentials/list", cluster.keys.alpha, {});
      expect(read.body.credentials.map((c: { name: string }) => c.name)).toEqual(["before"]);
      for (const t of tenants.slice(0, 5)) {
        const listed = await postJson(fresh.url, "/v1/credentials/list", t.key, {});
        expect(listed.body.credentials.map((c: { name: string }) => c.name)).toEqual(["during"]);
      }
    } finally {
      dir.remove();
    }
  }, 120_000);
});
