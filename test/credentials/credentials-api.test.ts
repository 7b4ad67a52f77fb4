/**
 * The credential routes as a client sees them over HTTP: every route in both
 * body forms (plain and `{"json": ...}`), the exact output fields of API.md,
 * name normalisation, the statuses each route can reach, and that a refused
 * request changes nothing.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  addApiKey,
  addTenant,
  dumpDb,
  manualClock,
  snapshotDb,
  startTestServer,
  uniqueName,
  type TestServer,
} from "../helpers";
import { revokeApiKey } from "../../src/tenants/store";
import { seedCredential, expectCredential } from "../http/route-fixtures";
import { envelop, expectError, expectOk, expectUnauthorized, expectValidationError, ISO_UTC, UUID } from "../http/wire";

const clock = manualClock();
let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({ clock });
});
afterAll(async () => server.close());

const FORMS = [
  { label: "plain", enveloped: false, wrap: (input: unknown) => input },
  { label: "enveloped", enveloped: true, wrap: (input: unknown) => envelop(input) },
  { label: "enveloped with meta", enveloped: true, wrap: (input: unknown) => envelop(input, { batch: false }) },
] as const;

/** The empty input in each of its three spellings, with the form the response must take. */
const EMPTY_INPUTS = [
  { label: '{"json":{}}', body: '{"json":{}}', enveloped: true },
  { label: '{"json":{},"meta":{}}', body: '{"json":{},"meta":{}}', enveloped: true },
  { label: "{}", body: "{}", enveloped: false },
  { label: "an empty body", body: "", enveloped: false },
] as const;

const post = (path: string, body: unknown, key?: string) => server.post(path, body, key === undefined ? {} : { key });

async function listNames(key = server.keys.alpha): Promise<string[]> {
  return expectOk(await post("/v1/credentials/list", {}, key), false).credentials.map((c: { name: string }) => c.name);
}

async function expectUnchangedBy(run: () => Promise<void>): Promise<void> {
  const before = await snapshotDb(server.db);
  await run();
  expect(await snapshotDb(server.db)).toEqual(before);
}

describe("/v1/credentials/create", () => {
  for (const form of FORMS) {
    test(`stores a credential and answers success, credential_id, message (${form.label})`, async () => {
      const name = uniqueName("create");
      const output = expectOk(await post("/v1/credentials/create", form.wrap({ name, value: "hunter2" })), form.enveloped);
      expect(Object.keys(output).sort()).toEqual(["credential_id", "message", "success"]);
      expect(output.success).toBe(true);
      expect(output.credential_id).toMatch(UUID);
      expect(output.message).toContain(name);
      await expectCredential(server, { id: output.credential_id, name, value: "hunter2" });
    });

    test(`409 for a name that exists, in the request's form, and nothing changes (${form.label})`, async () => {
      const existing = await seedCredential(server);
      await expectUnchangedBy(async () => {
        const response = await post("/v1/credentials/create", form.wrap({ name: `  ${existing.name.toUpperCase()} `, value: "other" }));
        const error = expectError(response, 409, "CONFLICT", form.enveloped);
        expect(error.message).toContain(existing.name);
        expect(error.message).toContain("/v1/credentials/upsert");
        expect(error.data).toEqual({ name: existing.name });
      });
      await expectCredential(server, existing);
    });
  }

  test("trims and lowercases the name, then reads it back by any spelling", async () => {
    const base = uniqueName("mixed");
    const output = expectOk(await post("/v1/credentials/create", { name: `  ${base.toUpperCase()}\t`, value: "v1" }), false);
    expect(await listNames()).toContain(base);
    expect(await listNames()).not.toContain(base.toUpperCase());
    for (const spelling of [base, base.toUpperCase(), ` ${base} `]) {
      expect(expectOk(await post("/v1/credentials/get", { name: spelling }), false)).toEqual({ id: output.credential_id, value: "v1" });
    }
  });

  test("accepts a name of exactly 128 characters, rejects 129, and stores nothing for it", async () => {
    const tenant = await addTenant(server, `t128_${Date.now()}`);
    const long = "n".repeat(128);
    expectOk(await post("/v1/credentials/create", { name: long, value: "v" }, tenant.key), false);
    await expectUnchangedBy(async () => {
      const issues = expectValidationError(await post("/v1/credentials/create", { name: "m".repeat(129), value: "v" }, tenant.key), false);
      expect(issues.map((i) => i.path)).toEqual([["name"]]);
    });
    expect(await listNames(tenant.key)).toEqual([long]);
  });

  test("values round-trip byte for byte (unicode, newlines, JSON-looking text)", async () => {
    for (const value of ["päss wörd ✓ 🔑", "line1\nline2\r\n\ttab", '{"json":{"name":"x"}}', " leading and trailing spaces "]) {
      const seeded = await seedCredential(server, { value });
      await expectCredential(server, seeded);
    }
  });

  test("unknown extra fields are ignored and never stored", async () => {
    const name = uniqueName("extra");
    const marker = `EXTRA_MARKER_${crypto.randomUUID()}`;
    const response = await post("/v1/credentials/create", envelop({ name, value: "v", [marker]: marker, note: marker }));
    const output = expectOk(response, true);
    expect(await dumpDb(server.db)).not.toContain(marker);
    expect(expectOk(await post("/v1/credentials/get", { name }), false)).toEqual({ id: output.credential_id, value: "v" });
  });

  for (const empty of EMPTY_INPUTS) {
    test(`400 naming both fields for the empty input ${empty.label}, and nothing changes`, async () => {
      await expectUnchangedBy(async () => {
        const issues = expectValidationError(await post("/v1/credentials/create", empty.body), empty.enveloped);
        expect(issues.map((i) => i.path[0]).sort()).toEqual(["name", "value"]);
      });
    });
  }

  test("a body with keys beside json and meta is not an envelope: it is plain input", async () => {
    await expectUnchangedBy(async () => {
      const body = { json: { name: uniqueName("notenv"), value: "v" }, extra: true };
      const issues = expectValidationError(await post("/v1/credentials/create", body), false);
      expect(issues.map((i) => i.path[0]).sort()).toEqual(["name", "value"]);
    });
  });

  test("400 for each bad field, with the field in data.issues and a message naming it", async () => {
    const cases = [
      { input: { name: "has-hyphen", value: "v" }, field: "name" },
      { input: { name: "has space", value: "v" }, field: "name" },
      { input: { name: "", value: "v" }, field: "name" },
      { input: { name: 42, value: "v" }, field: "name" },
      { input: { name: "ok_name", value: "" }, field: "value" },
      { input: { name: "ok_name", value: 42 }, field: "value" },
      { input: { name: "ok_name", value: null }, field: "value" },
      { input: { name: "ok_name" }, field: "value" },
      { input: { value: "v" }, field: "name" },
    ];
    await expectUnchangedBy(async () => {
      for (const c of cases) {
        const error = expectError(await post("/v1/credentials/create", c.input), 400, "BAD_REQUEST", false);
        expect(error.data.issues.map((i: { path: string[] }) => i.path)).toEqual([[c.field]]);
        expect(error.message).toContain(c.field);
      }
    });
  });
});

describe("/v1/credentials/upsert", () => {
  for (const form of FORMS) {
    test(`creates, then overwrites the same credential (${form.label})`, async () => {
      const name = uniqueName("upsert");
      const createdAt = clock.iso();
      const first = expectOk(await post("/v1/credentials/upsert", form.wrap({ name, value: "first" })), form.enveloped);
      expect(Object.keys(first).sort()).toEqual(["credential_id", "message", "overwritten", "success"]);
      expect(first).toMatchObject({ success: true, overwritten: false });
      expect(first.credential_id).toMatch(UUID);

      clock.advance(60_000);
      const updatedAt = clock.iso();
      const second = expectOk(
        await post("/v1/credentials/upsert", form.wrap({ name: ` ${name.toUpperCase()} `, value: "second" })),
        form.enveloped,
      );
      expect(second).toMatchObject({ success: true, overwritten: true, credential_id: first.credential_id });
      expect(typeof second.message).toBe("string");

      await expectCredential(server, { id: first.credential_id, name, value: "second" });
      const listed = expectOk(await post("/v1/credentials/list", {}), false).credentials.filter((c: { name: string }) => c.name === name);
      expect(listed).toEqual([{ credential_id: first.credential_id, name, created_at: createdAt, updated_at: updatedAt }]);
    });
  }

  for (const empty of EMPTY_INPUTS) {
    test(`400 for the empty input ${empty.label}`, async () => {
      await expectUnchangedBy(async () => void expectValidationError(await post("/v1/credentials/upsert", empty.body), empty.enveloped));
    });
  }
});

describe("/v1/credentials/list", () => {
  test("lists exactly credential_id, name, created_at, updated_at, sorted by name, and never a value", async () => {
    const tenant = await addTenant(server, `list_${Date.now()}`);
    const created: Record<string, { id: string; at: string }> = {};
    for (const name of ["zulu", "alpha_1", "mike", "alpha_0", "_underscore", "9lives"]) {
      clock.advance(1000);
      const at = clock.iso();
      const output = expectOk(await post("/v1/credentials/create", { name, value: `SECRET_OF_${name}` }, tenant.key), false);
      created[name] = { id: output.credential_id, at };
    }
    for (const form of FORMS) {
      const response = await post("/v1/credentials/list", form.wrap({}), tenant.key);
      const output = expectOk(response, form.enveloped);
      expect(Object.keys(output)).toEqual(["credentials"]);
      const sorted = Object.keys(created).sort();
      expect(output.credentials).toEqual(
        sorted.map((name) => ({ credential_id: created[name]!.id, name, created_at: created[name]!.at, updated_at: created[name]!.at })),
      );
      for (const item of output.credentials) {
        expect(Object.keys(item).sort()).toEqual(["created_at", "credential_id", "name", "updated_at"]);
        expect(item.created_at).toMatch(ISO_UTC);
      }
      expect(response.text).not.toContain("SECRET_OF_");
    }
  });

  for (const empty of EMPTY_INPUTS) {
    test(`answers the empty input ${empty.label} in the matching form`, async () => {
      const tenant = await addTenant(server, `empty_${Math.random().toString(36).slice(2, 10)}`);
      const output = expectOk(await post("/v1/credentials/list", empty.body, tenant.key), empty.enveloped);
      expect(output).toEqual({ credentials: [] });
    });
  }
});

describe("/v1/credentials/get", () => {
  for (const form of FORMS) {
    test(`returns exactly id and value (${form.label})`, async () => {
      const seeded = await seedCredential(server, { value: "the value" });
      const output = expectOk(await post("/v1/credentials/get", form.wrap({ name: seeded.name })), form.enveloped);
      expect(output).toEqual({ id: seeded.id, value: "the value" });
    });

    test(`404 for a name that does not exist (${form.label})`, async () => {
      const name = uniqueName("missing");
      const error = expectError(await post("/v1/credentials/get", form.wrap({ name: name.toUpperCase() })), 404, "NOT_FOUND", form.enveloped);
      expect(error.message).toContain(name);
      expect(error.message).toContain("/v1/credentials/list");
    });
  }

  for (const empty of EMPTY_INPUTS) {
    test(`400 naming the name field for the empty input ${empty.label}`, async () => {
      const issues = expectValidationError(await post("/v1/credentials/get", empty.body), empty.enveloped);
      expect(issues.map((i) => i.path)).toEqual([["name"]]);
    });
  }
});

describe("/v1/credentials/update", () => {
  for (const form of FORMS) {
    test(`changes the value, keeping id, name and created_at (${form.label})`, async () => {
      const createdAt = clock.iso();
      const seeded = await seedCredential(server);
      clock.advance(5000);
      const output = expectOk(await post("/v1/credentials/update", form.wrap({ id: seeded.id, value: "new value" })), form.enveloped);
      expect(Object.keys(output).sort()).toEqual(["message", "success"]);
      expect(output.success).toBe(true);
      expect(output.message).toContain(seeded.name);
      await expectCredential(server, { ...seeded, value: "new value" });
      const listed = expectOk(await post("/v1/credentials/list", {}), false).credentials.find((c: { credential_id: string }) => c.credential_id === seeded.id);
      expect(listed).toEqual({ credential_id: seeded.id, name: seeded.name, created_at: createdAt, updated_at: clock.iso() });
    });

    test(`renames, normalising the new name; the old name is gone (${form.label})`, async () => {
      const seeded = await seedCredential(server);
      const newName = uniqueName("renamed");
      const output = expectOk(
        await post("/v1/credentials/update", form.wrap({ id: seeded.id, name: `  ${newName.toUpperCase()} ` })),
        form.enveloped,
      );
      expect(output).toMatchObject({ success: true });
      expect(output.message).toContain(newName);
      await expectCredential(server, { ...seeded, name: newName });
      expectError(await post("/v1/credentials/get", { name: seeded.name }), 404, "NOT_FOUND", false);
      const names = await listNames();
      expect(names).toContain(newName);
      expect(names).not.toContain(seeded.name);
    });

    test(`409 when renaming onto a taken name, and nothing changes (${form.label})`, async () => {
      const a = await seedCredential(server);
      const b = await seedCredential(server);
      await expectUnchangedBy(async () => {
        const response = await post("/v1/credentials/update", form.wrap({ id: a.id, name: b.name.toUpperCase(), value: "would-be" }));
        const error = expectError(response, 409, "CONFLICT", form.enveloped);
        expect(error.message).toContain(b.name);
      });
      await expectCredential(server, a);
      await expectCredential(server, b);
    });

    test(`404 for an id that does not exist, and nothing changes (${form.label})`, async () => {
      const id = crypto.randomUUID();
      await expectUnchangedBy(async () => {
        const error = expectError(await post("/v1/credentials/update", form.wrap({ id, value: "v" })), 404, "NOT_FOUND", form.enveloped);
        expect(error.message).toContain(id);
      });
    });

    test(`400 with neither a value nor a name, and nothing changes (${form.label})`, async () => {
      const seeded = await seedCredential(server);
      await expectUnchangedBy(async () => {
        const response = await post("/v1/credentials/update", form.wrap({ id: seeded.id }));
        const issues = expectValidationError(response, form.enveloped);
        expect(issues.map((i) => i.message).join(" ")).toContain("give a new value, a new name, or both");
      });
    });
  }

  test("changes value and name together", async () => {
    const seeded = await seedCredential(server);
    const newName = uniqueName("both");
    expectOk(await post("/v1/credentials/update", { id: seeded.id, name: newName, value: "both-changed" }), false);
    await expectCredential(server, { id: seeded.id, name: newName, value: "both-changed" });
  });

  test("renaming to its own name in another spelling is not a conflict", async () => {
    const seeded = await seedCredential(server);
    expectOk(await post("/v1/credentials/update", { id: seeded.id, name: ` ${seeded.name.toUpperCase()}` }), false);
    await expectCredential(server, seeded);
  });

  test("400 for a bad id, a bad new name, or an empty value, and nothing changes", async () => {
    const seeded = await seedCredential(server);
    await expectUnchangedBy(async () => {
      for (const [input, field] of [
        [{ id: "123", value: "v" }, "id"],
        [{ id: seeded.id, name: "bad-name" }, "name"],
        [{ id: seeded.id, value: "" }, "value"],
        [{ id: seeded.id, value: 5 }, "value"],
      ] as const) {
        const issues = expectValidationError(await post("/v1/credentials/update", input), false);
        expect(issues.map((i) => i.path[0])).toContain(field);
      }
    });
  });

  for (const empty of EMPTY_INPUTS) {
    test(`400 naming id for the empty input ${empty.label}`, async () => {
      const issues = expectValidationError(await post("/v1/credentials/update", empty.body), empty.enveloped);
      expect(issues.map((i) => i.path[0])).toContain("id");
    });
  }
});

describe("/v1/credentials/delete", () => {
  for (const form of FORMS) {
    test(`deletes; the credential is gone from get and list; a second delete is 404 (${form.label})`, async () => {
      const seeded = await seedCredential(server);
      const output = expectOk(await post("/v1/credentials/delete", form.wrap({ id: seeded.id })), form.enveloped);
      expect(Object.keys(output).sort()).toEqual(["message", "success"]);
      expect(output.success).toBe(true);
      expect(output.message).toContain(seeded.name);
      expectError(await post("/v1/credentials/get", { name: seeded.name }), 404, "NOT_FOUND", false);
      expect(await listNames()).not.toContain(seeded.name);
      expectError(await post("/v1/credentials/delete", form.wrap({ id: seeded.id })), 404, "NOT_FOUND", form.enveloped);
    });

    test(`409 while jobs reference it, listing them; succeeds once they end (${form.label})`, async () => {
      const seeded = await seedCredential(server);
      const jobIds = [crypto.randomUUID(), crypto.randomUUID()].sort();
      const reference = (jobId: string) => ({
        job_id: jobId,
        credential_id: seeded.id,
        tenant_id: server.tenants.alpha,
        created_at: clock.iso(),
      });
      await server.db.insertInto("job_credentials").values(reference(jobIds[0]!)).execute();

      await expectUnchangedBy(async () => {
        const error = expectError(await post("/v1/credentials/delete", form.wrap({ id: seeded.id })), 409, "CONFLICT", form.enveloped);
        expect(error.data.job_ids).toEqual([jobIds[0]]);
        expect(error.message).toContain("1 queued or running job");
        expect(error.message).toContain(seeded.name);
      });

      await server.db.insertInto("job_credentials").values(reference(jobIds[1]!)).execute();
      await expectUnchangedBy(async () => {
        const error = expectError(await post("/v1/credentials/delete", form.wrap({ id: seeded.id })), 409, "CONFLICT", form.enveloped);
        expect(error.data.job_ids).toEqual(jobIds);
        expect(error.message).toContain("2 queued or running jobs");
      });
      await expectCredential(server, seeded);

      await server.db.deleteFrom("job_credentials").where("credential_id", "=", seeded.id).execute();
      expectOk(await post("/v1/credentials/delete", form.wrap({ id: seeded.id })), form.enveloped);
      expectError(await post("/v1/credentials/get", { name: seeded.name }), 404, "NOT_FOUND", false);
    });
  }

  test("a reference held by another tenant's job does not block deletion", async () => {
    const seeded = await seedCredential(server);
    const beta = await seedCredential(server, { tenant: "beta" });
    await server.db
      .insertInto("job_credentials")
      .values({ job_id: crypto.randomUUID(), credential_id: beta.id, tenant_id: server.tenants.beta, created_at: clock.iso() })
      .execute();
    expectOk(await post("/v1/credentials/delete", { id: seeded.id }), false);
  });

  for (const empty of EMPTY_INPUTS) {
    test(`400 naming id for the empty input ${empty.label}`, async () => {
      const issues = expectValidationError(await post("/v1/credentials/delete", empty.body), empty.enveloped);
      expect(issues.map((i) => i.path)).toEqual([["id"]]);
    });
  }
});

describe("another tenant's rows are reported exactly as if they did not exist", () => {
  test("update and delete of alpha's id by beta give the same 404 as an id that never existed", async () => {
    const alpha = await seedCredential(server);
    const neverId = crypto.randomUUID();
    for (const path of ["/v1/credentials/update", "/v1/credentials/delete"]) {
      const input = (id: string) => (path.endsWith("update") ? { id, value: "x" } : { id });
      const foreign = expectError(await post(path, input(alpha.id), server.keys.beta), 404, "NOT_FOUND", false);
      const never = expectError(await post(path, input(neverId), server.keys.beta), 404, "NOT_FOUND", false);
      expect({ ...foreign, message: foreign.message.replace(alpha.id, "<id>") }).toEqual({
        ...never,
        message: never.message.replace(neverId, "<id>"),
      });
    }
    const foreign = expectError(await post("/v1/credentials/get", { name: alpha.name }, server.keys.beta), 404, "NOT_FOUND", false);
    expect(foreign.message).toContain(alpha.name);
    await expectCredential(server, alpha);
  });
});

describe("authentication", () => {
  test("a revoked key gets 401 Invalid API key in both forms and changes nothing; the tenant's other key still works", async () => {
    const { key, apiKeyId } = await addApiKey(server, server.tenants.alpha);
    const seeded = await seedCredential(server);
    expectOk(await post("/v1/credentials/get", { name: seeded.name }, key), false);

    expect(await revokeApiKey(server.db, apiKeyId, clock.iso())).toBe("revoked");
    await expectUnchangedBy(async () => {
      expectUnauthorized(await post("/v1/credentials/get", { name: seeded.name }, key), false);
      expectUnauthorized(await post("/v1/credentials/get", envelop({ name: seeded.name }), key), true);
      expectUnauthorized(await post("/v1/credentials/create", { name: uniqueName("revoked"), value: "v" }, key), false);
      expectUnauthorized(await post("/v1/credentials/delete", { id: seeded.id }, key), false);
      expectUnauthorized(await post("/v1/credentials/list", {}, key), false);
    });
    await expectCredential(server, seeded);
  });

  test("401 comes before validation: a bad body with no key is 401, not 400", async () => {
    expectUnauthorized(await server.post("/v1/credentials/create", { name: "bad-name" }, { key: null }), false);
    expectUnauthorized(await server.post("/v1/credentials/create", envelop([]), { key: "usk_nope" }), true);
    expectUnauthorized(await server.post("/v1/credentials/create", "{not json", { key: null }), false);
  });
});

describe("value size limit (UNDERSTUDY_MAX_VALUE_BYTES)", () => {
  let limited: TestServer;
  beforeAll(async () => {
    limited = await startTestServer({ env: { UNDERSTUDY_MAX_VALUE_BYTES: "16" } });
  });
  afterAll(async () => limited.close());

  test("413 on create, upsert and update past the limit, counted in UTF-8 bytes; nothing changes; at the limit it is stored", async () => {
    const atLimit = "x".repeat(16);
    const overByOne = "x".repeat(17);
    const multibyte = "é".repeat(9); // 9 characters, 18 bytes
    const created = expectOk(await limited.post("/v1/credentials/create", { name: "at_limit", value: atLimit }), false);

    const before = await snapshotDb(limited.db);
    for (const value of [overByOne, multibyte]) {
      for (const enveloped of [false, true]) {
        const wrap = (input: unknown) => (enveloped ? envelop(input) : input);
        for (const [path, input] of [
          ["/v1/credentials/create", { name: "too_big", value }],
          ["/v1/credentials/upsert", { name: "too_big", value }],
          ["/v1/credentials/upsert", { name: "at_limit", value }],
          ["/v1/credentials/update", { id: created.credential_id, value }],
        ] as const) {
          const error = expectError(await limited.post(path, wrap(input)), 413, "PAYLOAD_TOO_LARGE", enveloped);
          expect(error.message).toContain("16 bytes");
          expect(error.message).toContain("UNDERSTUDY_MAX_VALUE_BYTES");
          expect(error.data).toEqual({ limit_bytes: 16 });
          expect(error.message).not.toContain(value);
        }
      }
    }
    expect(await snapshotDb(limited.db)).toEqual(before);
    expect(expectOk(await limited.post("/v1/credentials/get", { name: "at_limit" }), false).value).toBe(atLimit);
    expectError(await limited.post("/v1/credentials/get", { name: "too_big" }), 404, "NOT_FOUND", false);
  });
});
