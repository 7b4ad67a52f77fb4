import { Database } from "bun:sqlite";
import { afterAll, expect, test } from "bun:test";
import { toMasterKey } from "../../src/vault/master-key";
import { call, serveDeployment } from "../e2e/serve-child";
import { expectNoSecretIn, newMasterKey } from "../helpers";
import { runCliProcess, type ServerProcess } from "../process-helpers";

// Issue 9, item 2: `rotate-key` (a separate process) while a server still
// runs on the old key. The running server must not wrap a new tenant's data
// key with the old key, which a restart on the new key could not open.

const k1 = newMasterKey();
const k2 = newMasterKey();
const deployment = serveDeployment({ workflowsDir: "workflows", env: { UNDERSTUDY_MASTER_KEY: k1.text } });
const servers: ServerProcess[] = [];
afterAll(async () => {
  for (const s of servers) if (s.child.exitCode === null && s.child.signalCode === null) await s.stop();
  deployment.remove();
});

test("serve on k1, rotate-key to k2, new tenant through the running server, restart on k2: nothing lost, the refusal says why and changed nothing", async () => {
  const values = { before: "before-rotation-3301", during: "during-rotation-3302", refused: "refused-value-3303", later: "after-restart-3304" };
  const early = await deployment.addTenant("early");
  const old = await deployment.start();
  servers.push(old);
  expect((await call(old, early, "/v1/credentials/upsert", { name: "before", value: values.before })).status).toBe(200);

  const rotated = await runCliProcess(["rotate-key"], {
    cwd: deployment.cwd,
    env: { ...deployment.env, UNDERSTUDY_MASTER_KEY: k2.text, UNDERSTUDY_MASTER_KEY_PREVIOUS: k1.text },
  });
  expect(rotated.code, rotated.stderr).toBe(0);
  expect(rotated.stderr).toContain("1 tenant key(s) re-wrapped");

  // Tenants are made by the admin CLI, which needs no master key.
  const late = await deployment.addTenant("late");

  // The running server still serves the tenants whose data keys it holds...
  expect((await call(old, early, "/v1/credentials/upsert", { name: "during", value: values.during })).status).toBe(200);
  expect((await call(old, early, "/v1/credentials/get", { name: "before" })).body.value).toBe(values.before);
  // ...but refuses to make a data key for a new tenant with a key that is no longer current.
  const refused = await call(old, late, "/v1/credentials/upsert", { name: "refused", value: values.refused });
  expect(refused.status).toBe(503);
  expect(refused.body.code).toBe("SERVICE_UNAVAILABLE");
  expect(refused.body.message).toBe(
    "The server's master key was rotated while it was running, so it cannot store secrets for a tenant that has none yet. " +
      "The server's operator must restart it with the new master key; nothing was changed. Try again after the restart.",
  );
  expect(refused.body.data).toEqual({ problem: "master_key_rotated" });
  // /readyz says so, naming both key ids (one-way fingerprints).
  const ready = await fetch(`${old.url}/readyz`);
  expect(ready.status).toBe(503);
  const readyBody = (await ready.json()) as { status: string; master_key_id: string; message: string };
  expect(readyBody.status).toBe("unavailable");
  expect(readyBody.master_key_id).toBe(toMasterKey(k1.bytes).id);
  expect(readyBody.message).toContain(`The master key was rotated to ${toMasterKey(k2.bytes).id} while this server runs on ${toMasterKey(k1.bytes).id}`);
  expect(readyBody.message).toContain("Restart this server with UNDERSTUDY_MASTER_KEY (or UNDERSTUDY_MASTER_KEY_FILE) set to the new key.");
  expect(await old.stop()).toBe(0);
  expect(old.stdout()).toContain(`The master key was rotated to ${toMasterKey(k2.bytes).id}`);

  // The refusal changed nothing: no data key and no value for the late tenant.
  const raw = new Database(deployment.dbPath, { readonly: true });
  const lateId = (raw.query("SELECT id FROM tenants WHERE name = 'late'").get() as { id: string }).id;
  expect(raw.query("SELECT count(*) AS n FROM tenant_keys WHERE tenant_id = ?").get(lateId)).toEqual({ n: 0 });
  expect(raw.query("SELECT count(*) AS n FROM credentials WHERE tenant_id = ?").get(lateId)).toEqual({ n: 0 });
  expect(raw.query("SELECT DISTINCT master_key_id FROM tenant_keys").all()).toEqual([{ master_key_id: toMasterKey(k2.bytes).id }]);
  raw.close();

  // Restart on k2 alone: it starts, and everything written reads.
  const fresh = await deployment.start({ UNDERSTUDY_MASTER_KEY: k2.text });
  servers.push(fresh);
  expect((await call(fresh, early, "/v1/credentials/get", { name: "before" })).body.value).toBe(values.before);
  expect((await call(fresh, early, "/v1/credentials/get", { name: "during" })).body.value).toBe(values.during);
  expect((await call(fresh, late, "/v1/credentials/get", { name: "refused" })).status).toBe(404);
  expect((await call(fresh, late, "/v1/credentials/upsert", { name: "later", value: values.later })).status).toBe(200);
  expect((await call(fresh, late, "/v1/credentials/get", { name: "later" })).body.value).toBe(values.later);
  expect((await fetch(`${fresh.url}/readyz`)).status).toBe(200);
  expect(await fresh.stop()).toBe(0);

  expectNoSecretIn([old.stdout(), old.stderr(), fresh.stdout(), fresh.stderr(), rotated.stderr, rotated.stdout, JSON.stringify(refused.body), JSON.stringify(readyBody)].join("\n"), [
    ...Object.values(values),
    k1.text,
    k2.text,
  ]);
}, 60_000);
