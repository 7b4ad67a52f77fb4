import { afterAll, describe, expect, test } from "bun:test";
import { sql } from "kysely";
import { listAuditEvents, flushAuditEvents } from "../../src/audit/store";
import { expectNoSecretIn, startTestServer, type TestServer } from "../helpers";

// Issue 13: an opened credential value is kept in memory for the next read
// of it (UNDERSTUDY_VALUE_CACHE_SECONDS), but the row is read every time:
// whatever changes in the database is what the next read answers.

const servers: TestServer[] = [];
afterAll(async () => {
  for (const s of servers) await s.close();
});

async function server(env: Record<string, string> = {}) {
  const s = await startTestServer({ env });
  servers.push(s);
  return s;
}

const get = async (s: TestServer, name: string, key?: string) => s.post("/v1/credentials/get", { name }, key ? { key } : {});

async function sealedValue(s: TestServer, name: string): Promise<Uint8Array> {
  const row = await s.db.selectFrom("credentials").select("sealed_value").where("tenant_id", "=", s.tenants.alpha).where("name", "=", name).executeTakeFirstOrThrow();
  return new Uint8Array(row.sealed_value);
}

async function setSealedValue(s: TestServer, name: string, value: Uint8Array) {
  await s.db.updateTable("credentials").set({ sealed_value: value }).where("tenant_id", "=", s.tenants.alpha).where("name", "=", name).execute();
}

describe("a credential value read again", () => {
  for (const setting of ["60", "0"]) {
    test(`UNDERSTUDY_VALUE_CACHE_SECONDS=${setting}: a byte flipped in the stored value after reads answers the integrity error, never the old value`, async () => {
      const s = await server({ UNDERSTUDY_VALUE_CACHE_SECONDS: setting });
      expect((await s.post("/v1/credentials/upsert", { name: "api", value: "value-api-91b2" })).status).toBe(200);
      for (let i = 0; i < 3; i++) expect((await get(s, "api")).body.value).toBe("value-api-91b2");

      const stored = await sealedValue(s, "api");
      const flipped = stored.slice();
      flipped[flipped.length - 1]! ^= 0x01;
      await setSealedValue(s, "api", flipped);
      const refused = await get(s, "api");
      expect(refused.status).toBe(500);
      expect(refused.body.message).toContain('credential "api" failed its integrity check');
      expectNoSecretIn(refused.text, ["value-api-91b2"]);

      // The original bytes back: they open again.
      await setSealedValue(s, "api", stored);
      expect((await get(s, "api")).body.value).toBe("value-api-91b2");
    });
  }

  test("another credential's sealed bytes copied onto a row that was read: the integrity error, never either value", async () => {
    const s = await server();
    await s.post("/v1/credentials/upsert", { name: "one", value: "value-one-5c1d" });
    await s.post("/v1/credentials/upsert", { name: "two", value: "value-two-e87a" });
    expect((await get(s, "one")).body.value).toBe("value-one-5c1d");
    expect((await get(s, "two")).body.value).toBe("value-two-e87a");
    await setSealedValue(s, "one", await sealedValue(s, "two"));
    const refused = await get(s, "one");
    expect(refused.status).toBe(500);
    expectNoSecretIn(refused.text, ["value-one-5c1d", "value-two-e87a"]);
    expect((await get(s, "two")).body.value).toBe("value-two-e87a");
  });

  test("an upsert, an update and a delete are what the next read sees; every read is audited, kept value or not", async () => {
    const s = await server();
    await s.post("/v1/credentials/upsert", { name: "rotating", value: "first-value-0a1" });
    expect((await get(s, "rotating")).body.value).toBe("first-value-0a1");
    await s.post("/v1/credentials/upsert", { name: "rotating", value: "second-value-0a2" });
    expect((await get(s, "rotating")).body.value).toBe("second-value-0a2");
    const id = (await get(s, "rotating")).body.id as string;
    await s.post("/v1/credentials/update", { id, value: "third-value-0a3" });
    expect((await get(s, "rotating")).body.value).toBe("third-value-0a3");
    await s.post("/v1/credentials/update", { id, name: "renamed" });
    expect((await get(s, "rotating")).status).toBe(404);
    expect((await get(s, "renamed")).body.value).toBe("third-value-0a3");
    await s.post("/v1/credentials/delete", { id });
    expect((await get(s, "renamed")).status).toBe(404);

    // Another tenant never reads it, kept or not.
    await s.post("/v1/credentials/upsert", { name: "shared_name", value: "alpha-only-77f" });
    expect((await get(s, "shared_name")).body.value).toBe("alpha-only-77f");
    expect((await get(s, "shared_name", s.keys.beta)).status).toBe(404);

    await flushAuditEvents(s.db);
    const reads = (await listAuditEvents(s.db, { tenantId: s.tenants.alpha })).filter((e) => e.action === "credential.read");
    expect(reads.map((e) => e.outcome)).toEqual(["success", "success", "success", "success", "not_found", "success", "not_found", "success"]);
    const dump = JSON.stringify(await sql`SELECT * FROM audit_events`.execute(s.db));
    expectNoSecretIn(dump + s.logs.join("\n"), ["first-value-0a1", "second-value-0a2", "third-value-0a3", "alpha-only-77f"]);
  });

  test("a bad setting is refused at start with what to give", async () => {
    await expect(startTestServer({ env: { UNDERSTUDY_VALUE_CACHE_SECONDS: "-1" } })).rejects.toThrow(/UNDERSTUDY_VALUE_CACHE_SECONDS/);
    await expect(startTestServer({ env: { UNDERSTUDY_VALUE_CACHE_SECONDS: "7200" } })).rejects.toThrow(/at most 3600 seconds/);
  });
});

test("reads sent together (one query for them all on PostgreSQL) each answer the caller's own tenant's value, or 404", async () => {
  const s = await server();
  await s.post("/v1/credentials/upsert", { name: "same_name", value: "alpha-same-1c" });
  await s.post("/v1/credentials/upsert", { name: "same_name", value: "beta-same-2d" }, { key: s.keys.beta });
  await s.post("/v1/credentials/upsert", { name: "alpha_only", value: "alpha-only-3e" });
  const asks = Array.from({ length: 30 }, (_, i) => {
    const beta = i % 3 === 1;
    const name = i % 5 === 0 ? "alpha_only" : i % 7 === 0 ? "missing_name" : "same_name";
    return { beta, name, answer: get(s, name, beta ? s.keys.beta : undefined) };
  });
  for (const ask of asks) {
    const answer = await ask.answer;
    if (ask.name === "missing_name" || (ask.name === "alpha_only" && ask.beta)) expect(answer.status).toBe(404);
    else expect(answer.body.value).toBe(ask.name === "alpha_only" ? "alpha-only-3e" : ask.beta ? "beta-same-2d" : "alpha-same-1c");
  }
});
