/**
 * Libretto Cloud routes Understudy does not serve (API.md, "Routes Understudy
 * does not serve"): every call the libretto CLI 0.6.45 makes for billing, the
 * catalogue, SMS numbers, code sharing and hosted sign-up/auth gets a 404
 * NOT_FOUND whose message (which the CLI prints) says Understudy does not
 * offer that feature and what to do instead, sent as the CLI sends it.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { UNSERVED_FEATURES } from "../../src/http/unserved";
import { sendRequest, startTestServer, type TestServer } from "../helpers";
import { expectError } from "./wire";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(async () => server.close());

interface CliCall {
  method: "GET" | "POST" | "DELETE";
  /** As the CLI builds it; a query string is not part of the path the message names. */
  url: string;
  /** The body as the CLI sends it (undefined: none). */
  body?: unknown;
  /** How the CLI authenticates this call: an API key, a session cookie, or nothing (sign-in). */
  auth: "key" | "cookie" | "none";
  /** Words of the message that say what the feature is and what to do instead. */
  says: string[];
}

const BILLING = ["Understudy does not offer billing", "no plans, subscriptions or usage limits"];
const CATALOGUE = ["Understudy does not offer the workflow catalogue", "libretto cloud deploy", "libretto cloud jobs create"];
const SMS = ["Understudy does not offer SMS numbers or SMS one-time codes", "TOTP secret stored as a credential"];
const SHARING = ["Understudy does not offer code sharing", "deploy it with that tenant's API key"];
const AUTH = ["Understudy does not offer hosted sign-up, sign-in", "understudy keys create --tenant NAME", "LIBRETTO_API_KEY"];

const rpc = (input: Record<string, unknown> = {}) => ({ json: input });
const bookmarkId = "0b7c5a4e-3d2f-4e1a-9b8c-7d6e5f4a3b2c";

/** Every such call of the CLI, by source file (packages/libretto/src/...). */
const CLI_CALLS: CliCall[] = [
  // cli/commands/billing.ts
  { method: "POST", url: "/v1/billing/openPlansPage", body: rpc(), auth: "key", says: BILLING },
  { method: "POST", url: "/v1/billing/subscription", body: rpc(), auth: "key", says: BILLING },
  // cli/commands/cloud-catalogue.ts
  { method: "GET", url: "/v1/catalogue?q=eligibility&limit=20", auth: "key", says: CATALOGUE },
  { method: "GET", url: "/v1/catalogue/acme/check-eligibility", auth: "key", says: CATALOGUE },
  {
    method: "POST",
    url: "/v1/catalogue/run/acme/check-eligibility",
    body: rpc({ params: { member_id: "123" }, skip_callbacks: true }),
    auth: "key",
    says: CATALOGUE,
  },
  { method: "GET", url: "/v1/catalogue/bookmarks", auth: "key", says: CATALOGUE },
  { method: "POST", url: "/v1/catalogue/bookmarks", body: rpc({ workflow: "acme/check-eligibility" }), auth: "key", says: CATALOGUE },
  { method: "DELETE", url: `/v1/catalogue/bookmarks/${bookmarkId}`, body: undefined, auth: "key", says: CATALOGUE },
  // cli/commands/cloud-sms-numbers.ts
  { method: "POST", url: "/v1/smsNumbers/provision", body: rpc({ label: "portal" }), auth: "key", says: SMS },
  { method: "POST", url: "/v1/smsNumbers/list", body: rpc(), auth: "key", says: SMS },
  { method: "POST", url: "/v1/smsNumbers/update", body: rpc({ id: "n1", label: "x" }), auth: "key", says: SMS },
  { method: "POST", url: "/v1/smsNumbers/release", body: rpc({ id: "n1" }), auth: "key", says: SMS },
  // shared/workflow/claimSmsOtp.ts (a workflow's claimSmsOtp)
  { method: "POST", url: "/v1/smsOtp/claims/create", body: rpc({ sms_number_id: "n1" }), auth: "key", says: SMS },
  { method: "POST", url: "/v1/smsOtp/claims/get", body: rpc({ claim_id: "c1" }), auth: "key", says: SMS },
  { method: "POST", url: "/v1/smsOtp/claims/expire", body: rpc({ claim_id: "c1" }), auth: "key", says: SMS },
  // cli/commands/cloud-publishing.ts
  { method: "POST", url: "/v1/workflows/share", body: rpc({ workflow: "portal-login" }), auth: "key", says: SHARING },
  { method: "POST", url: "/v1/workflows/unshare", body: rpc({ workflow: "portal-login" }), auth: "key", says: SHARING },
  // cli/commands/auth.ts: the sign-in flow sends no credential; Better Auth routes take a session cookie or a key
  { method: "POST", url: "/v1/auth/cliLoginCreate", body: rpc(), auth: "none", says: AUTH },
  { method: "POST", url: "/v1/auth/cliLoginPoll", body: rpc({ requestId: "r1", secret: "s1" }), auth: "none", says: AUTH },
  { method: "GET", url: "/api/auth/get-session", auth: "cookie", says: AUTH },
  { method: "POST", url: "/api/auth/sign-out", auth: "cookie", says: AUTH },
  { method: "GET", url: "/api/auth/organization/list", auth: "key", says: AUTH },
  { method: "POST", url: "/api/auth/organization/invite-member", body: { email: "a@example.com", role: "member", organizationId: "o1" }, auth: "key", says: AUTH },
  { method: "POST", url: "/api/auth/api-key/create", body: { name: "laptop" }, auth: "key", says: AUTH },
  { method: "GET", url: "/api/auth/api-key/list", auth: "key", says: AUTH },
  { method: "POST", url: "/api/auth/api-key/delete", body: { keyId: "k1" }, auth: "cookie", says: AUTH },
  // cli/core/telemetry.ts: after every command, with the key when there is one
  {
    method: "POST",
    url: "/v1/telemetry/recordCliEvent",
    body: { installId: "i1", timestamp: "2026-11-30T00:00:00.000Z", event: "cloud deploy", error: false, packageVersion: "0.6.45", buildChannel: "node_modules" },
    auth: "key",
    says: ["Understudy does not offer CLI usage telemetry", "LIBRETTO_TELEMETRY_DISABLED=1"],
  },
];

const pathOf = (url: string) => url.split("?")[0]!;
const isEnveloped = (body: unknown) => typeof body === "object" && body !== null && "json" in body;

describe("routes of features Understudy does not offer", () => {
  for (const call of CLI_CALLS) {
    test(`${call.method} ${call.url} (${call.auth === "none" ? "no credential" : call.auth}) is a 404 that says so`, async () => {
      const response = await sendRequest(server, call.method, call.url, {
        body: call.body,
        key: call.auth === "key" ? server.keys.alpha : null,
        headers: call.auth === "cookie" ? { cookie: "better-auth.session_token=abc.def" } : {},
      });
      const error = expectError(response, 404, "NOT_FOUND", isEnveloped(call.body));
      expect(error.message).toContain(`(${call.method} ${pathOf(call.url)} is a Libretto Cloud route)`);
      for (const words of call.says) expect(error.message).toContain(words);
      expect(error.message).not.toContain("No route");
      expect(error.data).toEqual({});
    });
  }

  test("every path pattern of the table is exercised by a CLI call above", () => {
    const covered = (pattern: string) =>
      CLI_CALLS.some(({ url }) => {
        const path = pathOf(url);
        if (!pattern.endsWith("/*")) return path === pattern;
        const base = pattern.slice(0, -2);
        return path === base || path.startsWith(`${base}/`);
      });
    for (const feature of UNSERVED_FEATURES) for (const pattern of feature.paths) expect([pattern, covered(pattern)]).toEqual([pattern, true]);
  });

  test("a wrong API key changes nothing: the feature is absent whoever asks", async () => {
    const error = expectError(
      await sendRequest(server, "POST", "/v1/billing/subscription", { body: rpc(), key: "usk_not_a_key" }),
      404,
      "NOT_FOUND",
      true,
    );
    expect(error.message).toContain("Understudy does not offer billing");
  });

  test("neighbouring paths keep the generic 404, and served routes are unaffected", async () => {
    for (const path of ["/v1/catalogues", "/v1/workflows/shared", "/v1/billingx/status", "/api/authx"]) {
      const error = expectError(await server.post(path, {}), 404, "NOT_FOUND", false);
      expect(error.message).toContain(`No route POST ${path}`);
    }
    const listed = await server.post("/v1/workflows/list", { json: {} });
    expect(listed.status).toBe(200);
    expect(Object.keys(listed.body.json)).toContain("deployed_workflows");
  });
});
