import { Database } from "bun:sqlite";
import { afterAll, expect, test } from "bun:test";
import { join } from "node:path";
import { randomId, systemClock } from "../../src/clock";
import { createApiKey, createTenant } from "../../src/tenants/service";
import { workflow } from "../../src/workflows/define";
import { call, serveDeployment } from "../e2e/serve-child";
import { editDatabaseFile, expectNoSecretIn, newMasterKey, serveDatabaseFile, tempDir } from "../helpers";
import { runCliProcess, type ServerProcess } from "../process-helpers";

// Issue 9, item 6: a tenant whose data key row was deleted from the database.

const deployment = serveDeployment({ workflowsDir: "workflows" });
const servers: ServerProcess[] = [];
afterAll(async () => {
  for (const s of servers) if (s.child.exitCode === null && s.child.signalCode === null) await s.stop();
  deployment.remove();
});

async function start(): Promise<ServerProcess> {
  const server = await deployment.start();
  servers.push(server);
  return server;
}

function query<T>(sql: string): T[] {
  const raw = new Database(deployment.dbPath, { readonly: true });
  try {
    return raw.query(sql).all() as T[];
  } finally {
    raw.close();
  }
}

test("a deleted tenant key row: every read and write of that tenant says what is missing and how to restore; nothing is re-keyed", async () => {
  const acme = await deployment.addTenant("acme");
  const other = await deployment.addTenant("other");
  const values = { c1: "acme-value-one-4411", c2: "acme-value-two-4422", o1: "other-value-4433" };
  let server = await start();
  for (const name of ["c1", "c2"] as const) expect((await call(server, acme, "/v1/credentials/upsert", { name, value: values[name] })).status).toBe(200);
  expect((await call(server, other, "/v1/credentials/upsert", { name: "o1", value: values.o1 })).status).toBe(200);
  const backupFile = join(deployment.cwd, "backup.db");
  const backup = await runCliProcess(["backup", backupFile], { cwd: deployment.cwd, env: deployment.env });
  expect(backup.code, backup.stderr).toBe(0);
  expect(await server.stop()).toBe(0);

  const [{ id: acmeId }] = query<{ id: string }>("SELECT id FROM tenants WHERE name = 'acme'") as [{ id: string }];
  editDatabaseFile(deployment.dbPath, [`DELETE FROM tenant_keys WHERE tenant_id = '${acmeId}'`]);

  // The server starts: the other tenants are fine.
  server = await start();
  const answers = [];
  for (let i = 0; i < 10; i++) {
    answers.push(await call(server, acme, "/v1/credentials/get", { name: i % 2 ? "c1" : "c2" }));
  }
  answers.push(await call(server, acme, "/v1/credentials/upsert", { name: "c3", value: "acme-value-new-4444" }));
  answers.push(await call(server, acme, "/v1/credentials/update", { id: query<{ id: string }>("SELECT id FROM credentials WHERE name = 'c1'")[0]!.id, value: "acme-value-new-4455" }));
  for (const answer of answers) {
    expect(answer.status).toBe(500);
    expect(answer.body.code).toBe("INTERNAL_SERVER_ERROR");
    expect(answer.body.message).toBe(
      "This tenant's data key is missing from the server's database, so its stored secrets cannot be decrypted or changed. " +
        "The server's operator must restore the database from a backup; nothing was changed.",
    );
    expect(answer.body.data).toEqual({ problem: "data_key_missing" });
  }
  expect((await call(server, other, "/v1/credentials/get", { name: "o1" })).body.value).toBe(values.o1);
  expect((await fetch(`${server.url}/readyz`)).status).toBe(200);
  expect(await server.stop()).toBe(0);

  // The log says which tenant's key, that its row was removed, and what to do; each time.
  const logged = server.stdout().split("\n").filter((line) => line.includes(`The data key of tenant ${acmeId} is missing`));
  expect(logged.length).toBe(answers.length);
  expect(logged[0]).toContain("its row in the tenant_keys table was removed from the database");
  expect(logged[0]).toContain("Restore the database from a backup (`understudy restore FILE`, server stopped)");
  expect(server.stdout()).not.toContain("integrity check");
  expectNoSecretIn(server.stdout() + server.stderr(), [...Object.values(values), "acme-value-new-4444", "acme-value-new-4455", deployment.env.UNDERSTUDY_MASTER_KEY!]);

  // Nothing changed: no new data key for acme (which would orphan its values for good), no value rewritten.
  expect(query(`SELECT tenant_id FROM tenant_keys WHERE tenant_id = '${acmeId}'`)).toEqual([]);
  expect(query<{ name: string; version: number }>(`SELECT name, version FROM credentials WHERE tenant_id = '${acmeId}' ORDER BY name`)).toEqual([
    { name: "c1", version: 1 },
    { name: "c2", version: 1 },
  ]);

  // The way out the message names: restore the backup, and everything reads.
  const restored = await runCliProcess(["restore", backupFile], { cwd: deployment.cwd, env: deployment.env });
  expect(restored.code, restored.stderr).toBe(0);
  server = await start();
  for (const name of ["c1", "c2"] as const) expect((await call(server, acme, "/v1/credentials/get", { name })).body.value).toBe(values[name]);
  expect(await server.stop()).toBe(0);
}, 60_000);

test("a job that needs a value of such a tenant fails with the same message; the log says which tenant's key is missing", async () => {
  const dir = tempDir();
  const dbPath = join(dir.path, "u.db");
  const master = newMasterKey();
  const uses = workflow("uses-token", { credentials: ["token"], handler: (_ctx, input: any) => ({ length: String(input.credentials?.token ?? "").length }) });
  let s = await serveDatabaseFile(dbPath, master.bytes, { workflows: [uses] });
  try {
    const tenant = await createTenant(s.db, systemClock, randomId, "acme");
    const { key } = await createApiKey(s.db, systemClock, randomId, tenant.id);
    expect((await s.post("/v1/credentials/create", key, { name: "token", value: "job-token-5511" })).status).toBe(200);
    await s.close();
    editDatabaseFile(dbPath, [`DELETE FROM tenant_keys WHERE tenant_id = '${tenant.id}'`]);

    s = await serveDatabaseFile(dbPath, master.bytes, { workflows: [uses] });
    const created = await s.post("/v1/jobs/create", key, { workflow: "uses-token", params: {} });
    expect(created.status).toBe(200);
    let job: any;
    for (let i = 0; i < 200; i++) {
      job = (await s.post("/v1/jobs/get", key, { id: created.body.job_id })).body;
      if (["completed", "failed", "cancelled"].includes(job.status)) break;
      await Bun.sleep(25);
    }
    expect(job.status).toBe("failed");
    expect(job.error).toContain("This tenant's data key is missing from the server's database");
    expect(s.logs.some((line) => line.includes(`The data key of tenant ${tenant.id} is missing`))).toBe(true);
    expectNoSecretIn(s.logs.join("\n") + JSON.stringify(job), ["job-token-5511", master.text]);
  } finally {
    await s.close();
    dir.remove();
  }
}, 30_000);
