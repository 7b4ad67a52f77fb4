/**
 * Secrets a client chooses to sign deliveries with are at least 16 bytes
 * (issue 9, item 17): a webhook's plain signing_secret and a job's or
 * schedule's callback_secret. Shorter is a 400 that says why, stores
 * nothing, and never echoes the secret. Bytes are counted in UTF-8, the form
 * that keys the HMAC.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { workflow } from "../../src/workflows/define";
import { addTenant, snapshotDb, startTestServer, uniqueName, type TestServer } from "../helpers";
import { expectError, expectOk } from "../http/wire";

const echo = workflow("secret-echo", () => null);
const RARE_CRON = "0 0 29 2 *";
const URL = "https://hooks.example.com/secret-length";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({ workflows: [echo], runnerPaused: true });
});
afterAll(async () => server.close());

/** Every route that takes a chosen secret, with a fresh valid input around one. */
function routes(key: string): { path: string; field: string; input: (secret: string) => Promise<Record<string, unknown>> }[] {
  const post = async (path: string, input: Record<string, unknown>) => expectOk(await server.post(path, input, { key }), false);
  return [
    { path: "/v1/webhooks/create", field: "signing_secret", input: async (secret) => ({ url: URL, signing_secret: secret }) },
    {
      path: "/v1/webhooks/update",
      field: "signing_secret",
      input: async (secret) => ({ id: (await post("/v1/webhooks/create", { url: URL })).webhook_endpoint_id, signing_secret: secret }),
    },
    { path: "/v1/jobs/create", field: "callback_secret", input: async (secret) => ({ workflow: echo.name, callback_url: URL, callback_secret: secret }) },
    {
      path: "/v1/schedules/create",
      field: "callback_secret",
      input: async (secret) => ({ workflow: echo.name, cron_expr: RARE_CRON, callback_url: URL, callback_secret: secret }),
    },
    {
      path: "/v1/schedules/update",
      field: "callback_secret",
      input: async (secret) => ({
        id: (await post("/v1/schedules/create", { workflow: echo.name, cron_expr: RARE_CRON })).schedule.id,
        callback_url: URL,
        callback_secret: secret,
      }),
    },
  ];
}

const SHORT: [string, string][] = [
  ["15 ASCII bytes", "short-secret-15"],
  ["1 byte", "x"],
  ["15 bytes in 5 characters", "€€€€€"],
];
const LONG_ENOUGH: [string, string][] = [
  ["16 ASCII bytes", "exactly-16-bytes"],
  ["18 bytes in 6 characters", "€€€€€€"],
  ["a whsec_ secret of 32 bytes", `whsec_${Buffer.alloc(32, 9).toString("base64")}`],
];

test("a secret shorter than 16 bytes is a 400 that says why, stores nothing and never echoes the secret", async () => {
  const { key } = await addTenant(server, uniqueName("secrets"));
  for (const route of routes(key)) {
    for (const [what, secret] of SHORT) {
      const input = await route.input(secret);
      const before = await snapshotDb(server.db);
      const response = await server.post(route.path, input, { key });
      const error = expectError(response, 400, "BAD_REQUEST", false);
      const issue = error.data.issues.find((i: { path: string[] }) => i.path[0] === route.field);
      if (!issue) throw new Error(`${route.path} with ${what}: no issue at ${route.field}: ${response.text}`);
      expect(issue.message).toContain("at least 16 bytes");
      expect(issue.message).toContain(`not ${Buffer.byteLength(secret)}`);
      expect(error.message).toContain(route.field);
      if (secret.length >= 5) expect(response.text).not.toContain(secret);
      expect(await snapshotDb(server.db)).toEqual(before);
    }
  }
});

test("16 bytes and more are accepted", async () => {
  const { key } = await addTenant(server, uniqueName("secrets"));
  for (const route of routes(key)) {
    for (const [what, secret] of LONG_ENOUGH) {
      const response = await server.post(route.path, await route.input(secret), { key });
      if (response.status !== 200) throw new Error(`${route.path} with ${what}: ${response.status} ${response.text}`);
    }
  }
});
