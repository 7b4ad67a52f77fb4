/**
 * No secret leaves the server where it should not: after a run of requests
 * carrying distinctive values and API keys - successes and every kind of
 * error - neither the server log nor any error response nor any list response
 * holds a value or a key (as is, base64, base64url or hex), and the database
 * holds neither in clear. Also the shape of the request log line.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { addApiKey, dumpDb, secretForms, sendRequest, startTestServer, type TestResponse, type TestServer } from "../helpers";
import { revokeApiKey } from "../../src/tenants/store";
import { envelop, ISO_UTC, UUID } from "./wire";

const BODY_LIMIT = 16 * 1024;
const VALUE_LIMIT = 1024;

let server: TestServer;
/** Every response of the run, with the key it was sent with (undefined: alpha's; null: none). */
const responses: { path: string; key?: string | null; response: TestResponse }[] = [];
const secrets: string[] = [];
let revokedKey = "";
const unknownKey = `usk_${Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64url")}`;

const secret = (label: string) => {
  const value = `S3CR3T_${label}_${crypto.randomUUID()}`;
  secrets.push(value);
  return value;
};

async function call(path: string, body: unknown, key?: string | null): Promise<TestResponse> {
  const response = await server.post(path, body, key === undefined ? {} : { key });
  responses.push({ path, key, response });
  return response;
}

beforeAll(async () => {
  server = await startTestServer({
    env: { UNDERSTUDY_MAX_BODY_BYTES: String(BODY_LIMIT), UNDERSTUDY_MAX_VALUE_BYTES: String(VALUE_LIMIT) },
  });
  const revoked = await addApiKey(server, server.tenants.alpha);
  revokedKey = revoked.key;
  await revokeApiKey(server.db, revoked.apiKeyId, new Date().toISOString());

  // Successes, in both forms, with values that look like secrets.
  const created = await call("/v1/credentials/create", { name: "password", value: secret("create") });
  const createdId: string = created.body.credential_id;
  await call("/v1/credentials/create", envelop({ name: "api_token", value: secret("create_env") }, { m: 1 }));
  await call("/v1/credentials/upsert", { name: "password", value: secret("upsert") });
  await call("/v1/credentials/upsert", envelop({ name: "otp_seed", value: secret("upsert_env") }));
  await call("/v1/credentials/update", { id: createdId, value: secret("update") });
  await call("/v1/credentials/create", { name: "beta_pw", value: secret("beta") }, server.keys.beta);
  await call("/v1/credentials/get", { name: "password" });
  await call("/v1/credentials/list", {});
  await call("/v1/credentials/list", envelop({}));
  await call("/v1/credentials/create", { name: "with_extra", value: secret("extra_value"), note: secret("extra_field") });

  // Errors whose requests carry a secret.
  await call("/v1/credentials/create", { name: "password", value: secret("conflict") }); // 409
  await call("/v1/credentials/create", envelop({ name: "password", value: secret("conflict_env") })); // 409
  await call("/v1/credentials/create", { name: "bad-name!", value: secret("bad_name") }); // 400
  await call("/v1/credentials/create", { name: "ok_name", value: { nested: secret("nested_object") } }); // 400
  await call("/v1/credentials/create", { name: "ok_name", value: [secret("in_array")] }); // 400
  await call("/v1/credentials/create", envelop([secret("array_body")])); // 400
  await call("/v1/credentials/create", `{"name":"broken","value":"${secret("malformed")}"`); // 400 malformed JSON
  await call("/v1/credentials/update", { id: crypto.randomUUID(), value: secret("update_unknown") }); // 404
  await call("/v1/credentials/update", { id: createdId, name: "api_token", value: secret("rename_conflict") }); // 409
  await call("/v1/credentials/update", { id: "not-a-uuid", value: secret("bad_id") }); // 400
  await call("/v1/credentials/upsert", { name: "too_long", value: secret("value_too_large").repeat(30) }); // 413 value
  await call("/v1/credentials/create", { name: "huge_body", value: secret("body_too_large").repeat(600) }); // 413 body
  await call("/v1/credentials/create", { name: "no_key", value: secret("no_key") }, null); // 401
  await call("/v1/credentials/create", { name: "unknown_key", value: secret("unknown_key") }, unknownKey); // 401
  await call("/v1/credentials/create", { name: "revoked_key", value: secret("revoked_key") }, revokedKey); // 401
  await call("/v1/credentials/get", { name: "password" }, server.keys.beta); // 404 for another tenant
  await call("/v1/credentials/get", { name: "password" }, revokedKey); // 401
  await call("/v1/credentials/delete", { id: createdId }, server.keys.beta); // 404
  responses.push({ path: "/v1/credentials/list", response: await sendRequest(server, "GET", "/v1/credentials/list") }); // 405 (not POST)
  await call("/v1/no/such-route", { value: secret("unknown_route") }); // 404

  // Browser profile states: successes and errors whose requests carry one.
  const profileState = (value: string, extra: Record<string, unknown> = {}) => ({
    cookies: [{ name: "sid", value, domain: "example.test", ...extra }],
    origins: [{ origin: "https://example.test", localStorage: [{ name: "token", value: secret("profile_storage") }] }],
  });
  await call("/v1/browserProfiles/upload", { name: "portal", state: profileState(secret("profile_cookie")) });
  await call("/v1/browserProfiles/upload", envelop({ name: "portal", state: profileState(secret("profile_cookie_env")) }));
  await call("/v1/browserProfiles/list", {});
  await call("/v1/browserProfiles/upload", { name: "bad name", state: profileState(secret("profile_bad_name")) }); // 400
  await call("/v1/browserProfiles/upload", { name: "portal", state: profileState(secret("profile_bad_same_site"), { sameSite: "Sometimes" }) }); // 400
  await call("/v1/browserProfiles/upload", { name: "portal", state: profileState(secret("profile_too_large").repeat(600)) }); // 413 body
  await call("/v1/browserProfiles/upload", { name: "portal", state: profileState(secret("profile_beta")) }, server.keys.beta);
  await call("/v1/browserProfiles/upload", { name: "portal", state: profileState(secret("profile_no_key")) }, null); // 401
});
afterAll(async () => server.close());

/** Every secret the run used, and the API keys, in every encoded form. */
function needles(): { label: string; needle: string }[] {
  const keys = { alpha: server.keys.alpha, beta: server.keys.beta, revoked: revokedKey, unknown: unknownKey };
  return [
    ...secrets.flatMap((s) => secretForms(s).map((needle) => ({ label: `value ${s}`, needle }))),
    ...Object.entries(keys).flatMap(([name, key]) =>
      // The key's part after the prefix too: a log that strips "usk_" still leaks.
      [...secretForms(key), key.slice(4)].map((needle) => ({ label: `${name} API key`, needle })),
    ),
  ];
}

function expectNoNeedle(haystack: string, where: string) {
  for (const { label, needle } of needles()) {
    if (haystack.includes(needle)) throw new Error(`${where} contains the ${label} (as ${JSON.stringify(needle)})`);
  }
}

describe("no secret leaks", () => {
  test("the run produced every kind of error response", () => {
    const statuses = new Set(responses.map((r) => r.response.status));
    for (const status of [200, 400, 401, 404, 405, 409, 413]) expect(statuses).toContain(status);
    expect(secrets.length).toBeGreaterThan(20);
  });

  test("no value and no API key appears in any server log line", () => {
    expect(server.logs.length).toBeGreaterThanOrEqual(responses.length);
    expectNoNeedle(server.logs.join("\n"), "the server log");
  });

  test("no value and no API key appears in any error response (body or headers)", () => {
    const errors = responses.filter((r) => r.response.status >= 400);
    expect(errors.length).toBeGreaterThan(15);
    for (const { path, response } of errors) {
      const headers = [...response.headers.entries()].map(([k, v]) => `${k}: ${v}`).join("\n");
      expectNoNeedle(`${response.text}\n${headers}`, `the ${response.status} response of ${path}`);
    }
  });

  test("no value appears in a list response", () => {
    const lists = responses.filter((r) => r.path.endsWith("/list") && r.response.status === 200);
    expect(lists.length).toBe(3);
    for (const { response } of lists) expectNoNeedle(response.text, "a list response");
  });

  test("the database holds no value and no API key in clear (values are sealed, keys hashed)", async () => {
    expectNoNeedle(await dumpDb(server.db), "the database");
  });
});

describe("the request log", () => {
  const requestLines = () =>
    server.logs.map((line) => JSON.parse(line) as Record<string, unknown>).filter((entry) => entry.msg === "request");

  test("one line per request, with time, request_id, method, path, status, duration_ms, tenant_id and nothing else", () => {
    const lines = requestLines();
    expect(lines.length).toBe(responses.length);
    for (const line of lines) {
      expect(Object.keys(line).sort()).toEqual(["duration_ms", "level", "method", "msg", "path", "request_id", "status", "tenant_id", "time"]);
      expect(line.time).toMatch(ISO_UTC);
      expect(line.request_id).toMatch(UUID);
      expect(["GET", "POST"]).toContain(line.method as string);
      expect(line.path).toMatch(/^\/v1\//);
      expect(typeof line.status).toBe("number");
      expect(typeof line.duration_ms).toBe("number");
      expect(line.duration_ms as number).toBeGreaterThanOrEqual(0);
    }
  });

  test("each response's x-request-id names its log line, with the right path, status and tenant", () => {
    const byId = new Map(requestLines().map((line) => [line.request_id as string, line]));
    const tenantOf = (key: string | null | undefined) =>
      key === undefined || key === server.keys.alpha ? server.tenants.alpha : key === server.keys.beta ? server.tenants.beta : null;
    for (const { path, key, response } of responses) {
      const requestId = response.headers.get("x-request-id");
      expect(requestId).toMatch(UUID);
      const line = byId.get(requestId!);
      if (!line) throw new Error(`no request log line for ${path} (${requestId})`);
      expect(line.path).toBe(path);
      expect(line.status).toBe(response.status);
      // Refused before the key is resolved: unknown route, wrong method, or the key itself.
      // (A body over the limit is refused after the key, so its line names the tenant.)
      const refusedBeforeAuth =
        response.status === 401 || response.status === 405 || path === "/v1/no/such-route";
      expect({ path, status: response.status, tenant_id: line.tenant_id }).toEqual({
        path,
        status: response.status,
        tenant_id: refusedBeforeAuth ? null : tenantOf(key),
      });
    }
    const tenants = new Set(requestLines().map((l) => l.tenant_id));
    expect(tenants).toContain(server.tenants.alpha);
    expect(tenants).toContain(server.tenants.beta);
    expect(tenants).toContain(null);
  });
});

describe("a 500", () => {
  test("a value that fails its integrity check gives a 500 whose message names no secret and no stack", async () => {
    const value = secret("tampered");
    const created = await call("/v1/credentials/create", { name: "tampered", value });
    const row = await server.db.selectFrom("credentials").select("sealed_value").where("id", "=", created.body.credential_id).executeTakeFirstOrThrow();
    const tampered = new Uint8Array(row.sealed_value);
    tampered[tampered.length - 1] = tampered[tampered.length - 1]! ^ 0xff;
    await server.db.updateTable("credentials").set({ sealed_value: tampered }).where("id", "=", created.body.credential_id).execute();

    for (const body of [{ name: "tampered" }, envelop({ name: "tampered" })]) {
      const response = await call("/v1/credentials/get", body);
      expect(response.status).toBe(500);
      const error = "json" in response.body ? response.body.json : response.body;
      expect(error).toMatchObject({ defined: false, success: false, code: "INTERNAL_SERVER_ERROR", status: 500 });
      expect(error.message).toContain("tampered");
      expect(error.message).toContain("/v1/credentials/upsert");
      expect(response.text).not.toMatch(/\n\s+at /);
      expectNoNeedle(response.text, "the 500 response");
    }
    expectNoNeedle(server.logs.join("\n"), "the server log after a 500");
  });
});
