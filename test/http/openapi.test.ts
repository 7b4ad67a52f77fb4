/**
 * The unauthenticated routes - /healthz, /readyz, /v1/openapi.json - and
 * unknown routes.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createConfig, lintFromString } from "@redocly/openapi-core";
import { z } from "zod";
import { ERROR_CODES } from "../../src/errors";
import { ROUTE_ERRORS } from "../../src/http/openapi";
import { apiRoutes, sendRequest, startTestServer, type TestResponse, type TestServer } from "../helpers";
import { rawGet, rawHead } from "./raw";
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

  test("is an OpenAPI 3.1 document with the x-api-key scheme and a relative server", () => {
    expect(doc.openapi).toBe("3.1.0");
    expect(doc.components.securitySchemes.apiKey).toMatchObject({ type: "apiKey", in: "header", name: "x-api-key" });
    expect(doc.servers).toEqual([{ url: "/", description: expect.any(String) }]);
  });

  test("passes `redocly lint` with the recommended rules: no error and no warning", async () => {
    const config = await createConfig({ extends: ["recommended"] });
    const problems = await lintFromString({ source: JSON.stringify(doc), absoluteRef: "openapi.json", config });
    const found = problems.map((p) => `${p.severity} ${p.ruleId}: ${p.message} at ${p.location[0]?.pointer ?? "?"}`);
    expect(found).toEqual([]);
  });

  test("every operation has a unique operationId; the API routes need the API key, the GET routes none", () => {
    const ids = new Set<string>();
    for (const [path, item] of Object.entries<any>(doc.paths)) {
      for (const operation of Object.values<any>(item)) {
        expect(operation.operationId).toMatch(/^[A-Za-z][A-Za-z0-9]*$/);
        expect(ids.has(operation.operationId)).toBe(false);
        ids.add(operation.operationId);
        expect(operation.security).toEqual(path.startsWith("/v1/") && path !== "/v1/openapi.json" ? [{ apiKey: [] }] : []);
      }
    }
    expect(doc.paths["/v1/credentials/create"].post.operationId).toBe("credentialsCreate");
    for (const path of ["/healthz", "/readyz", "/metrics", "/v1/openapi.json"]) expect(doc.paths[path].get).toBeDefined();
  });

  test("every API route documents 400, 401, 413, 429 and 503, plus the 404 and 409 its service throws, with the error schema", () => {
    for (const route of apiRoutes) {
      if (!(route.path in ROUTE_ERRORS)) throw new Error(`${route.path} is missing from ROUTE_ERRORS in src/http/openapi.ts`);
      const responses = doc.paths[route.path].post.responses;
      const expected = ["200", "400", "401", "413", "429", "503", ...ROUTE_ERRORS[route.path]!.map((c) => (c === "NOT_FOUND" ? "404" : "409")), "default"];
      expect(Object.keys(responses).sort()).toEqual(expected.sort());
      for (const status of expected.filter((s) => s !== "200")) {
        const name = responses[status].$ref.replace("#/components/responses/", "");
        const schema = doc.components.responses[name].content["application/json"].schema;
        expect(schema.oneOf[0]).toEqual({ $ref: "#/components/schemas/Error" });
        expect(schema.oneOf[1].properties.json).toEqual({ $ref: "#/components/schemas/Error" });
      }
    }
    expect(doc.components.responses.TooManyRequests.headers["Retry-After"]).toBeDefined();
    expect(Object.keys(ROUTE_ERRORS).sort()).toEqual(apiRoutes.map((r) => r.path).sort());
  });

  test("the error schema describes data: issues with path and message, and the other fields errors carry", () => {
    const error = doc.components.schemas.Error;
    expect(error.properties.code.enum).toEqual([...ERROR_CODES]);
    const data = error.properties.data;
    expect(data.properties.issues.items).toMatchObject({ required: ["path", "message"], properties: { path: { type: "array", items: { type: "string" } } } });
    for (const field of ["limit_bytes", "retry_after_seconds", "allow", "name", "job_ids", "reason", "problem"]) expect(data.properties[field]).toBeDefined();
  });

  test("a request body is required where the route has a required field, and not where every field is optional", () => {
    for (const route of apiRoutes) {
      const operation = doc.paths[route.path].post;
      const plain = operation.requestBody.content["application/json"].schema.oneOf[0];
      // deployments/get and /sync take deployment_id or id: neither is required alone, one of them is.
      if ((plain.required ?? []).length > 0) expect({ path: route.path, required: operation.requestBody.required }).toEqual({ path: route.path, required: true });
    }
    expect(doc.paths["/v1/credentials/create"].post.requestBody.required).toBe(true);
    expect(doc.paths["/v1/deployments/sync"].post.requestBody.required).toBe(true);
    expect(doc.paths["/v1/credentials/list"].post.requestBody.required).toBe(false);
    expect(doc.paths["/v1/jobs/list"].post.requestBody.required).toBe(false);
  });

  test("where the body is not required, an empty body is accepted; where it is, an empty body is a 400", async () => {
    for (const route of apiRoutes) {
      const required = doc.paths[route.path].post.requestBody.required;
      const response = await sendRequest(server, "POST", route.path, { body: "" });
      if (required) expectError(response, 400, "BAD_REQUEST", false);
      else if (response.status !== 200) throw new Error(`${route.path} with an empty body: ${response.status} ${response.text}`);
    }
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

describe("real errors match the documented error schema", () => {
  test("400 (invalid JSON and validation), 401, 404, 405, 409 and 413 bodies all parse with components.schemas.Error", async () => {
    const doc = (await sendRequest(server, "GET", "/v1/openapi.json", { key: null })).body;
    const schema = z.fromJSONSchema(doc.components.schemas.Error);
    const name = `documented_${Date.now()}`;
    expect((await server.post("/v1/credentials/create", { name, value: "v" })).status).toBe(200);
    const errors: TestResponse[] = [
      await server.post("/v1/credentials/create", "{not json"),
      await server.post("/v1/credentials/create", { name: "no spaces allowed", value: 3 }),
      await server.post("/v1/credentials/list", {}, { key: "usk_wrong" }),
      await server.post("/v1/credentials/get", { name: "nothing_here" }),
      await sendRequest(server, "GET", "/v1/credentials/list"),
      await server.post("/v1/credentials/create", { name, value: "v" }),
      await server.post("/v1/credentials/create", { name: "big", value: "v".repeat(2 * 1024 * 1024) }),
      await server.post("/v1/credentials/upsert", { name: "big", value: "v".repeat(70 * 1024) }),
    ];
    expect(errors.map((e) => e.status)).toEqual([400, 400, 401, 404, 405, 409, 413, 413]);
    for (const response of errors) {
      const parsed = schema.safeParse(response.body);
      if (!parsed.success) throw new Error(`${response.status} ${response.text} does not match the schema: ${parsed.error.message}`);
    }
    expect(errors[1]!.body.data.issues.length).toBeGreaterThan(0);
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

const GET_ROUTES = ["/healthz", "/readyz", "/v1/openapi.json", "/metrics"];

describe("HEAD of the GET routes", () => {
  /**
   * The HEAD, then a GET of /healthz on the same connection (pipelined). Bun
   * 1.4.5 closes a connection, answering nothing, when a pipelined request
   * comes in while the one before it waits on I/O (a PostgreSQL query for
   * /readyz and /metrics): there, the HEAD goes alone with Connection: close,
   * and "next" is what followed its header section (nothing, or the close).
   */
  async function headThenHealthz(path: string, headers: Record<string, string>) {
    if (!server.databaseUrl) return rawHead(server.url, path, headers);
    const head = await rawGet(server.url, path, { method: "HEAD", headers });
    expect(head.body.length).toBe(0);
    return { head, next: (await rawGet(server.url, "/healthz")).raw };
  }

  /** HEAD, then GET (bounded retries: /metrics holds the RSS, whose digits may change between the two). */
  async function headAndGet(path: string, headers: Record<string, string> = {}) {
    for (let attempt = 1; ; attempt++) {
      const { head, next } = await headThenHealthz(path, headers);
      const get = await rawGet(server.url, path, { headers });
      if (head.headers["content-length"] === get.headers["content-length"] || attempt === 5) return { head, next, get };
    }
  }

  for (const path of GET_ROUTES) {
    test(`HEAD ${path} carries the GET's Content-Length and no body`, async () => {
      const { head, next, get } = await headAndGet(path);
      expect(head.status).toBe(200);
      expect(get.status).toBe(200);
      expect(get.headers["content-encoding"]).toBeUndefined();
      expect(Number(get.headers["content-length"])).toBe(get.body.length);
      expect(get.body.length).toBeGreaterThan(10);
      expect(head.headers["content-length"]).toBe(get.headers["content-length"]);
      expect(head.headers["content-type"]).toBe(get.headers["content-type"]);
      // The HEAD's answer ends with its headers: the GET of /healthz that followed on the connection comes next.
      expect(next.startsWith("HTTP/1.1 200")).toBe(true);
    });
  }

  test("HEAD with Accept-Encoding: gzip carries the compressed GET's Content-Length", async () => {
    const { head, get } = await headAndGet("/v1/openapi.json", { "accept-encoding": "gzip" });
    expect(get.headers["content-encoding"]).toBe("gzip");
    expect(head.headers["content-encoding"]).toBe("gzip");
    expect(head.headers["content-length"]).toBe(String(get.body.length));
  });
});

describe("a method a route does not take", () => {
  for (const path of GET_ROUTES) {
    test(`405 with Allow: GET, HEAD for POST, PUT and DELETE ${path}`, async () => {
      for (const method of ["POST", "PUT", "DELETE"]) {
        const response = await sendRequest(server, method, path, { key: null, body: {} });
        const error = expectError(response, 405, "METHOD_NOT_ALLOWED", false);
        expect(response.headers.get("allow")).toBe("GET, HEAD");
        expect(error.message).toContain(path);
        expect(error.data).toEqual({ allow: ["GET", "HEAD"] });
      }
    });
  }

  test("405 with Allow: POST for GET and HEAD of an API route (the shared bad-input suite covers the others)", async () => {
    const get = await sendRequest(server, "GET", "/v1/credentials/list");
    expectError(get, 405, "METHOD_NOT_ALLOWED", false);
    expect(get.headers.get("allow")).toBe("POST");
    const { head } = await rawHead(server.url, "/v1/credentials/list", { "x-api-key": server.keys.alpha });
    expect(head.status).toBe(405);
    expect(head.headers.allow).toBe("POST");
  });

  test("an unknown path stays a 404, whatever the method", async () => {
    for (const method of ["GET", "POST", "DELETE"]) expectError(await sendRequest(server, method, "/v1/credentials/nope"), 404, "NOT_FOUND", false);
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
