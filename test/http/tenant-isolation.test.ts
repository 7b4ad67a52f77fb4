/**
 * Tenant isolation for every route in apiRoutes: tenant beta, naming rows of
 * tenant alpha (ids, names), sees 404 or nothing of alpha's, and none of
 * alpha's rows change. The per-route case lives in route-fixtures.ts
 * (`otherTenant`), so routes added later inherit this suite.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { apiRoutes, snapshotTenant, startTestServer, type TestResponse, type TestServer } from "../helpers";
import { fixtureServerOptions, routeFixtures, skippedWithoutChromium } from "./route-fixtures";
import { envelop } from "./wire";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer(fixtureServerOptions);
});
afterAll(async () => server.close());

/** An enveloped response seen as its plain equivalent, so one expectation serves both forms. */
function unwrap(response: TestResponse): TestResponse {
  expect(Object.keys(response.body)).toEqual(["json"]);
  return { ...response, body: response.body.json, text: JSON.stringify(response.body.json) };
}

test("every route in apiRoutes has an other-tenant case in test/http/route-fixtures.ts", () => {
  const missing = apiRoutes.map((r) => r.path).filter((path) => !routeFixtures[path]?.otherTenant);
  expect(missing).toEqual([]);
});

for (const route of apiRoutes) {
  describe(`${route.path} (tenant isolation)`, () => {
    const fixture = routeFixtures[route.path];
    if (!fixture) {
      test("has a fixture", () => {
        throw new Error(`No fixture for ${route.path}: add one to test/http/route-fixtures.ts.`);
      });
      return;
    }
    if (skippedWithoutChromium(fixture)) return;

    for (const enveloped of [false, true]) {
      test(`beta naming alpha's rows sees none of them and changes none of them (${enveloped ? "enveloped" : "plain"})`, async () => {
        const otherTenant = await fixture.otherTenant({ server });
        const alphaBefore = await snapshotTenant(server.db, server.tenants.alpha);
        expect(Object.keys(alphaBefore).length).toBeGreaterThan(0);

        const response = await server.post(route.path, enveloped ? envelop(otherTenant.input) : otherTenant.input, {
          key: server.keys.beta,
        });
        otherTenant.expectResponse(enveloped ? unwrap(response) : response);

        expect(await snapshotTenant(server.db, server.tenants.alpha)).toEqual(alphaBefore);
        await otherTenant.alphaStillSees();
      });
    }
  });
}

test("the two tenants' lists are disjoint", async () => {
  const name = `shared_${crypto.randomUUID().replaceAll("-", "")}`;
  const a = await server.post("/v1/credentials/create", { name, value: "alpha-secret" }, { key: server.keys.alpha });
  const b = await server.post("/v1/credentials/create", { name, value: "beta-secret" }, { key: server.keys.beta });
  expect(a.status).toBe(200);
  expect(b.status).toBe(200);
  expect(a.body.credential_id).not.toBe(b.body.credential_id);

  const alphaList = (await server.post("/v1/credentials/list", {}, { key: server.keys.alpha })).body.credentials;
  const betaList = (await server.post("/v1/credentials/list", {}, { key: server.keys.beta })).body.credentials;
  const alphaIds = new Set(alphaList.map((c: { credential_id: string }) => c.credential_id));
  expect(betaList.some((c: { credential_id: string }) => alphaIds.has(c.credential_id))).toBe(false);

  expect((await server.post("/v1/credentials/get", { name }, { key: server.keys.alpha })).body.value).toBe("alpha-secret");
  expect((await server.post("/v1/credentials/get", { name }, { key: server.keys.beta })).body.value).toBe("beta-secret");
});
