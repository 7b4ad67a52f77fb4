/**
 * The audit trail: every credential change and read - refused or not - and
 * every rejected API key leaves a row in audit_events saying who (tenant, API
 * key), what (action, outcome) and which credential; no row ever holds a
 * value or a key.
 */
import { flushAuditEvents } from "../../src/audit/store";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { addApiKey, manualClock, secretForms, startTestServer, type TestServer } from "../helpers";
import { listApiKeys, revokeApiKey } from "../../src/tenants/store";
import type { AuditEventRow } from "../../src/store/schema";
import { envelop } from "../http/wire";

const clock = manualClock("2026-03-04T05:06:07.089Z");
let server: TestServer;
let alphaKeyId: string;
const values: string[] = [];

beforeAll(async () => {
  server = await startTestServer({ clock });
  const keys = await listApiKeys(server.db, server.tenants.alpha);
  expect(keys.length).toBe(1);
  alphaKeyId = keys[0]!.id;
});
afterAll(async () => server.close());

const value = (label: string) => {
  const v = `AUDITED_SECRET_${label}_${crypto.randomUUID()}`;
  values.push(v);
  return v;
};

async function lastAuditId(): Promise<number> {
  await flushAuditEvents(server.db);
  const row = await server.db.selectFrom("audit_events").select((eb) => eb.fn.max("id").as("id")).executeTakeFirst();
  return Number(row?.id ?? 0);
}

/** Sends a request and returns the response status and the audit rows it wrote. */
async function audited(path: string, body: unknown, key?: string | null): Promise<{ status: number; rows: AuditEventRow[]; body: any }> {
  const since = await lastAuditId();
  const response = await server.post(path, body, key === undefined ? {} : { key });
  // Reads and rejected keys are audited in batches after the response: write the batch now.
  await flushAuditEvents(server.db);
  const rows = await server.db.selectFrom("audit_events").selectAll().where("id", ">", since).orderBy("id").execute();
  return { status: response.status, rows, body: response.body };
}

/** The fields of an audit row a test cares about. */
const who = (overrides: Partial<AuditEventRow>): Record<string, unknown> => ({
  at: clock.iso(),
  tenant_id: server.tenants.alpha,
  api_key_id: alphaKeyId,
  ...overrides,
});

const strip = (row: AuditEventRow): Record<string, unknown> => {
  const { id: _id, detail: _detail, ...rest } = row;
  return rest;
};

describe("audit_events", () => {
  test("create, upsert, read, update and delete each leave one row with action, outcome, key and credential", async () => {
    clock.advance(1000);
    const created = await audited("/v1/credentials/create", { name: "Portal_Password", value: value("create") });
    expect(created.status).toBe(200);
    const id: string = created.body.credential_id;
    expect(created.rows.map(strip)).toEqual([
      who({ action: "credential.create", outcome: "success", credential_id: id, credential_name: "portal_password" }),
    ]);

    const upserted = await audited("/v1/credentials/upsert", envelop({ name: "portal_password", value: value("upsert") }));
    expect(upserted.status).toBe(200);
    expect(upserted.rows.map(strip)).toEqual([
      who({ action: "credential.upsert", outcome: "success", credential_id: id, credential_name: "portal_password" }),
    ]);

    const read = await audited("/v1/credentials/get", { name: "PORTAL_PASSWORD" });
    expect(read.status).toBe(200);
    expect(read.rows.map(strip)).toEqual([
      who({ action: "credential.read", outcome: "success", credential_id: id, credential_name: "portal_password" }),
    ]);

    const updated = await audited("/v1/credentials/update", { id, value: value("update"), name: "portal_pw" });
    expect(updated.status).toBe(200);
    expect(updated.rows.map(strip)).toEqual([
      who({ action: "credential.update", outcome: "success", credential_id: id, credential_name: "portal_pw" }),
    ]);

    const deleted = await audited("/v1/credentials/delete", { id });
    expect(deleted.status).toBe(200);
    expect(deleted.rows.map(strip)).toEqual([
      who({ action: "credential.delete", outcome: "success", credential_id: id, credential_name: "portal_pw" }),
    ]);
  });

  test("refusals are audited too: not found, conflicts, and a delete blocked by a job", async () => {
    const a = (await server.post("/v1/credentials/create", { name: "first", value: value("first") })).body.credential_id as string;
    await server.post("/v1/credentials/create", { name: "second", value: value("second") });

    const missingRead = await audited("/v1/credentials/get", { name: "No_Such_Name" });
    expect(missingRead.status).toBe(404);
    expect(missingRead.rows.map(strip)).toEqual([
      who({ action: "credential.read", outcome: "not_found", credential_id: null, credential_name: "no_such_name" }),
    ]);

    const duplicate = await audited("/v1/credentials/create", { name: "first", value: value("duplicate") });
    expect(duplicate.status).toBe(409);
    expect(duplicate.rows.map(strip)).toEqual([
      who({ action: "credential.create", outcome: "conflict", credential_id: null, credential_name: "first" }),
    ]);

    const renameConflict = await audited("/v1/credentials/update", { id: a, name: "second", value: value("rename") });
    expect(renameConflict.status).toBe(409);
    expect(renameConflict.rows.map(strip)).toEqual([
      who({ action: "credential.update", outcome: "conflict", credential_id: a, credential_name: "first" }),
    ]);

    const unknownId = crypto.randomUUID();
    const missingUpdate = await audited("/v1/credentials/update", { id: unknownId, value: value("missing_update") });
    expect(missingUpdate.status).toBe(404);
    expect(missingUpdate.rows.map(strip)).toEqual([
      who({ action: "credential.update", outcome: "not_found", credential_id: unknownId, credential_name: null }),
    ]);

    const missingDelete = await audited("/v1/credentials/delete", { id: unknownId });
    expect(missingDelete.status).toBe(404);
    expect(missingDelete.rows.map(strip)).toEqual([
      who({ action: "credential.delete", outcome: "not_found", credential_id: unknownId, credential_name: null }),
    ]);

    const jobId = crypto.randomUUID();
    await server.db
      .insertInto("job_credentials")
      .values({ job_id: jobId, credential_id: a, tenant_id: server.tenants.alpha, created_at: clock.iso() })
      .execute();
    const blocked = await audited("/v1/credentials/delete", { id: a });
    expect(blocked.status).toBe(409);
    expect(blocked.rows.map(strip)).toEqual([
      who({ action: "credential.delete", outcome: "conflict", credential_id: a, credential_name: "first" }),
    ]);
    await server.db.deleteFrom("job_credentials").where("job_id", "=", jobId).execute();
  });

  test("another tenant's read of alpha's name is audited under that tenant, as not found", async () => {
    await server.post("/v1/credentials/create", { name: "alpha_only", value: value("alpha_only") });
    const betaKeyId = (await listApiKeys(server.db, server.tenants.beta))[0]!.id;
    const read = await audited("/v1/credentials/get", { name: "alpha_only" }, server.keys.beta);
    expect(read.status).toBe(404);
    expect(read.rows.map(strip)).toEqual([
      who({
        tenant_id: server.tenants.beta,
        api_key_id: betaKeyId,
        action: "credential.read",
        outcome: "not_found",
        credential_id: null,
        credential_name: "alpha_only",
      }),
    ]);
  });

  test("a missing, unknown or revoked API key leaves an api_key.rejected row; the revoked one names its key and tenant", async () => {
    const missing = await audited("/v1/credentials/get", { name: "first" }, null);
    expect(missing.status).toBe(401);
    expect(missing.rows.map(strip)).toEqual([
      { at: clock.iso(), tenant_id: null, api_key_id: null, action: "api_key.rejected", outcome: "rejected", credential_id: null, credential_name: null },
    ]);
    expect(missing.rows[0]!.detail).toBe("missing");

    const unknown = await audited("/v1/credentials/create", { name: "x", value: value("unknown_key") }, "usk_not_a_real_key");
    expect(unknown.status).toBe(401);
    expect(unknown.rows.map(strip)).toEqual([
      { at: clock.iso(), tenant_id: null, api_key_id: null, action: "api_key.rejected", outcome: "rejected", credential_id: null, credential_name: null },
    ]);
    expect(unknown.rows[0]!.detail).toBe("unknown");

    const { key, apiKeyId } = await addApiKey(server, server.tenants.alpha);
    await revokeApiKey(server.db, apiKeyId, clock.iso());
    const revoked = await audited("/v1/credentials/get", { name: "first" }, key);
    expect(revoked.status).toBe(401);
    expect(revoked.rows.map(strip)).toEqual([
      who({ api_key_id: apiKeyId, action: "api_key.rejected", outcome: "rejected", credential_id: null, credential_name: null }),
    ]);
    expect(revoked.rows[0]!.detail).toBe("revoked");
  });

  test("a rejected input (400) is refused before any credential is touched and stores no value", async () => {
    const result = await audited("/v1/credentials/create", { name: "bad-name", value: value("bad_input") });
    expect(result.status).toBe(400);
    for (const row of result.rows) expect(row.action).not.toMatch(/^credential\./);
  });

  test("no audit row holds a value or an API key, in any column", async () => {
    // Its own run of audited requests carrying values, so the scan does not rely on the other tests.
    const id = (await server.post("/v1/credentials/create", { name: "scan_me", value: value("scan_create") })).body.credential_id;
    await server.post("/v1/credentials/create", { name: "scan_me", value: value("scan_conflict") });
    await server.post("/v1/credentials/upsert", envelop({ name: "scan_me", value: value("scan_upsert") }));
    await server.post("/v1/credentials/update", { id, value: value("scan_update"), name: "scan_me_too" });
    await server.post("/v1/credentials/update", { id: crypto.randomUUID(), value: value("scan_missing") });
    await server.post("/v1/credentials/get", { name: "scan_me_too" });
    await server.post("/v1/credentials/create", { name: "scan_x", value: value("scan_no_key") }, { key: null });
    await server.post("/v1/credentials/create", { name: "scan_y", value: value("scan_bad_key") }, { key: "usk_not_a_real_key" });
    await server.post("/v1/credentials/delete", { id });

    await flushAuditEvents(server.db);
    const rows = await server.db.selectFrom("audit_events").selectAll().execute();
    expect(rows.length).toBeGreaterThanOrEqual(9);
    const text = rows.map((row) => Object.values(row).map(String).join("\u0001")).join("\n");
    for (const secret of [...values, server.keys.alpha, server.keys.beta, "usk_not_a_real_key"]) {
      for (const form of secretForms(secret)) expect(text).not.toContain(form);
    }
  });
});
