/**
 * The unauthenticated routes - /healthz, /readyz, /v1/openapi.json - and
 * unknown routes.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { apiRoutes, sendRequest, startTestServer, type TestServer } from "../helpers";
import { expectError } from "./wire";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(async () => server.close());

// What the server accepts as input: the name is trimmed and lowercased after this check.
const NAME_PATTERN = "^\\s*[A-Za-z0-9_]{1,128}\\s*$";

describe("GET /v1/openapi.json", () => {
  let doc: any;
  beforeAll(async () => {
    const response = await sendRequest(server, "GET", "/v1/openapi.json", { key: null });
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type") ?? "").toContain("application/json");
    doc = response.body;
  });

  test("is an OpenAPI 3.1 document with the x-api-key scheme", () => {
    expect(doc.openapi).toBe("3.1.0");
    expect(doc.components.securitySchemes.apiKey).toEqual({ type: "apiKey", in: "header", name: "x-api-key" });
  });

  test("lists every route in apiRoutes as a POST with a request schema in both body forms", () => {
    for (const route of apiRoutes) {
      const operation = doc.paths[route.path]?.post;
      if (!operation) throw new Error(`${route.path} is missing from /v1/openapi.json`);
      expect(operation.security).toEqual([{ apiKey: [] }]);
      const schema = operation.requestBody.content["application/json"].schema;
      expect(schema.oneOf).toHaveLength(2);
      const [plain, enveloped] = schema.oneOf;
      expect(plain.type).toBe("object");
      expect(enveloped.required).toEqual(["json"]);
      expect(enveloped.properties.json).toEqual(plain);
      expect(operation.responses["200"]).toBeDefined();
      expect(operation.responses.default).toBeDefined();
    }
  });

  test("every request field called name carries the credential name pattern", () => {
    const withName = apiRoutes.filter((route) => route.path.startsWith("/v1/credentials/") && !/\/(list|delete)$/.test(route.path));
    expect(withName.map((r) => r.path).sort()).toEqual(
      ["/v1/credentials/create", "/v1/credentials/get", "/v1/credentials/update", "/v1/credentials/upsert"],
    );
    for (const route of withName) {
      const plain = doc.paths[route.path].post.requestBody.content["application/json"].schema.oneOf[0];
      expect(plain.properties.name.type).toBe("string");
      expect(plain.properties.name.pattern).toBe(NAME_PATTERN);
      expect(plain.properties.name.description).toContain("^[a-z0-9_]{1,128}$");
      // The documented pattern admits exactly what the server normalises: " PASSWORD " yes, "a-b" no.
      expect(new RegExp(NAME_PATTERN).test(" PASSWORD ")).toBe(true);
      expect(new RegExp(NAME_PATTERN).test("a-b")).toBe(false);
    }
  });

  test("ids are UUIDs and required fields are marked", () => {
    const create = doc.paths["/v1/credentials/create"].post.requestBody.content["application/json"].schema.oneOf[0];
    expect(create.required.sort()).toEqual(["name", "value"]);
    const del = doc.paths["/v1/credentials/delete"].post.requestBody.content["application/json"].schema.oneOf[0];
    expect(del.required).toEqual(["id"]);
    expect(del.properties.id.format).toBe("uuid");
  });

  test("needs no API key", async () => {
    expect((await sendRequest(server, "GET", "/v1/openapi.json", { key: "usk_wrong" })).status).toBe(200);
  });
});

describe("health", () => {
  test("GET /healthz answers 200 without a key", async () => {
    const response = await sendRequest(server, "GET", "/healthz", { key: null });
    expect(response.status).toBe(200);
    expect(response.body).toEqual({ status: "ok" });
  });

  test("GET /readyz answers 200 with the master key id once the database is reachable", async () => {
    const response = await sendRequest(server, "GET", "/readyz", { key: null });
    expect(response.status).toBe(200);
    expect(response.body.status).toBe("ready");
    expect(response.body.master_key_id).toBe(server.deps.vault.keyId);
  });
});

describe("unknown routes", () => {
  for (const path of ["/v1/credentials/nope", "/v1/nope/list", "/v2/credentials/list", "/nope", "/v1/credentials"]) {
    test(`404 NOT_FOUND for POST ${path}, with a message pointing at the API`, async () => {
      const error = expectError(await server.post(path, {}), 404, "NOT_FOUND", false);
      expect(error.message).toContain(path);
      expect(error.message).toContain("/v1/openapi.json");
    });
  }

  test("an unknown route answers in the request's form", async () => {
    expectError(await server.post("/v1/credentials/nope", { json: {} }), 404, "NOT_FOUND", true);
  });
});
