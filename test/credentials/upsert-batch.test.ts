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
