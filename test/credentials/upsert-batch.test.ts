/**
 * Upserts that arrive together share one transaction (group commit): each
 * still lands, in order, with its own audit row, and tenants stay apart.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { flushAuditEvents } from "../../src/audit/store";
import { startTestServer, type TestServer } from "../helpers";
import { expectOk } from "../http/wire";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server.close());

test("40 concurrent upserts of one name, from two tenants: every one answers 200, each tenant ends with its own last value and version 20, and 20 audit rows", async () => {
  const sent = [];
  for (let i = 1; i <= 20; i++) {
    sent.push(server.post("/v1/credentials/upsert", { name: "shared_name", value: `alpha-value-${i}` }));
    sent.push(server.post("/v1/credentials/upsert", { name: "shared_name", value: `beta-value-${i}` }, { key: server.keys.beta }));
  }
  const answers = await Promise.all(sent);
  for (const answer of answers) expect(answer.status).toBe(200);
  const alpha = answers.filter((_, i) => i % 2 === 0).map((a) => a.body);
  // The first one made it; every later one overwrote (requests are taken in arrival order).
  expect(alpha.filter((b) => !b.overwritten)).toHaveLength(1);
  expect(new Set(alpha.map((b) => b.credential_id)).size).toBe(1);

  for (const [key, prefix] of [[server.keys.alpha, "alpha"], [server.keys.beta, "beta"]] as const) {
    const read = expectOk(await server.post("/v1/credentials/get", { name: "shared_name" }, { key }), false);
    expect(read.value).toMatch(new RegExp(`^${prefix}-value-\\d+$`));
  }
  const rows = await server.db.selectFrom("credentials").select(["tenant_id", "version"]).where("name", "=", "shared_name").execute();
  expect(rows.map((r) => r.version).sort()).toEqual([20, 20]);
  await flushAuditEvents(server.db);
  const audits = await server.db
    .selectFrom("audit_events")
    .select(["tenant_id"])
    .where("action", "=", "credential.upsert")
    .where("credential_name", "=", "shared_name")
    .execute();
  expect(audits.filter((a) => a.tenant_id === server.tenants.alpha)).toHaveLength(20);
  expect(audits.filter((a) => a.tenant_id === server.tenants.beta)).toHaveLength(20);
});

test("concurrent upserts of many names all land, each readable with its own value", async () => {
  const names = Array.from({ length: 30 }, (_, i) => `many_${i}`);
  const answers = await Promise.all(names.map((name) => server.post("/v1/credentials/upsert", { name, value: `value of ${name}` })));
  for (const answer of answers) expect(answer.status).toBe(200);
  for (const name of names) {
    expect(expectOk(await server.post("/v1/credentials/get", { name }), false).value).toBe(`value of ${name}`);
  }
});

test("a batch that mixes stored and new names, some more than once, answers and writes as if each ran alone in arrival order", async () => {
  const { upsertCredential } = await import("../../src/credentials/service");
  const alpha = { tenantId: server.tenants.alpha, apiKeyId: null as unknown as string };
  const beta = { tenantId: server.tenants.beta, apiKeyId: null as unknown as string };
  await upsertCredential(server.deps, alpha, "mixed_stored", "stored-v1");
  const calls: [typeof alpha, string, string][] = [
    [alpha, "mixed_stored", "stored-v2"],
    [alpha, "mixed_new", "new-v1"],
    [beta, "mixed_new", "beta-new-v1"],
    [alpha, "mixed_new", "new-v2"],
    [alpha, "mixed_stored", "stored-v3"],
    [alpha, "mixed_other", "other-v1"],
  ];
  // Sent in one turn of the event loop: they share a batch (the first may go alone).
  const answers = await Promise.all(calls.map(([caller, name, value]) => upsertCredential(server.deps, caller, name, value)));
  expect(answers.map((a) => a.overwritten)).toEqual([true, false, false, true, true, false]);
  expect(answers[1]!.id).toBe(answers[3]!.id);
  expect(answers[2]!.id).not.toBe(answers[1]!.id);

  const read = async (key: string, name: string) => expectOk(await server.post("/v1/credentials/get", { name }, { key }), false).value;
  expect(await read(server.keys.alpha, "mixed_stored")).toBe("stored-v3");
  expect(await read(server.keys.alpha, "mixed_new")).toBe("new-v2");
  expect(await read(server.keys.beta, "mixed_new")).toBe("beta-new-v1");
  expect(await read(server.keys.alpha, "mixed_other")).toBe("other-v1");
  const versions = await server.db
    .selectFrom("credentials")
    .select(["tenant_id", "name", "version"])
    .where("name", "like", "mixed_%")
    .orderBy("name")
    .orderBy("tenant_id")
    .execute();
  const version = (tenantId: string, name: string) => versions.find((v) => v.tenant_id === tenantId && v.name === name)?.version;
  expect(version(server.tenants.alpha, "mixed_stored")).toBe(3);
  expect(version(server.tenants.alpha, "mixed_new")).toBe(2);
  expect(version(server.tenants.beta, "mixed_new")).toBe(1);
  expect(version(server.tenants.alpha, "mixed_other")).toBe(1);

  const audits = await server.db
    .selectFrom("audit_events")
    .select(["tenant_id", "credential_name", "detail"])
    .where("action", "=", "credential.upsert")
    .where("credential_name", "like", "mixed_%")
    .orderBy("id")
    .execute();
  expect(audits.map((a) => `${a.tenant_id === server.tenants.alpha ? "alpha" : "beta"} ${a.credential_name} ${a.detail}`)).toEqual([
    "alpha mixed_stored created",
    "alpha mixed_stored overwritten",
    "alpha mixed_new created",
    "beta mixed_new created",
    "alpha mixed_new overwritten",
    "alpha mixed_stored overwritten",
    "alpha mixed_other created",
  ]);
});

test("audit events written together inside a transaction (several INSERTs: 64/32/.../1 rows each) land with it, in order", async () => {
  const { recordAuditEvents } = await import("../../src/audit/store");
  const events = Array.from({ length: 7 }, (_, i) => ({
    at: new Date().toISOString(),
    tenantId: server.tenants.beta,
    apiKeyId: null,
    action: "credential.upsert" as const,
    outcome: "success" as const,
    credentialName: `in_trx_${i}`,
  }));
  await server.db.transaction().execute((trx) => recordAuditEvents(trx, events));
  const rows = await server.db.selectFrom("audit_events").select("credential_name").where("credential_name", "like", "in_trx_%").orderBy("id").execute();
  expect(rows.map((r) => r.credential_name)).toEqual(events.map((e) => e.credentialName));
});
