/**
 * The shared bad-input suite (Unkey's pattern): every route in apiRoutes is
 * checked for the failures no route may forget - missing and unknown API
 * keys, malformed JSON, bodies that are not objects, wrong field types, and
 * methods other than POST - in both body forms, and a rejected request must
 * change nothing. A route without a fixture in route-fixtures.ts fails here.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { z } from "zod";
import { apiRoutes, sendRequest, snapshotDb, startTestServer, type TestServer } from "../helpers";
import type { RouteDef } from "../../src/http/route";
import { fixtureServerOptions, routeFixtures, skippedWithoutChromium, type InvalidCase } from "./route-fixtures";
import { envelop, expectError, expectOk, expectUnauthorized, expectValidationError } from "./wire";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer(fixtureServerOptions);
});
afterAll(async () => server.close());

/** Runs every case, naming the case that failed. */
async function eachCase<T>(cases: readonly T[], label: (c: T) => string, run: (c: T) => Promise<void>): Promise<void> {
  expect(cases.length).toBeGreaterThan(0);
  for (const c of cases) {
    try {
      await run(c);
    } catch (error) {
      throw new Error(`${label(c)}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
}

/** Asserts that `run` leaves every non-volatile table exactly as it was. */
async function expectNoChange(run: () => Promise<void>): Promise<void> {
  const before = await snapshotDb(server.db);
  await run();
  expect(await snapshotDb(server.db)).toEqual(before);
}

interface JsonSchema {
  type?: string | string[];
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  properties?: Record<string, JsonSchema>;
}

const WRONG_TYPE_SAMPLES: readonly [string, unknown][] = [
  ["string", "wrong-type"],
  ["number", 12345],
  ["boolean", true],
  ["object", { wrong: "type" }],
  ["array", ["wrong-type"]],
  ["null", null],
];

/** The JSON types a schema admits, or undefined when it does not say (then no wrong type can be derived). */
function admittedTypes(schema: JsonSchema): Set<string> | undefined {
  if (schema.type !== undefined) {
    const types = new Set(Array.isArray(schema.type) ? schema.type : [schema.type]);
    if (types.has("integer")) types.add("number");
    return types;
  }
  const members = schema.anyOf ?? schema.oneOf;
  if (!members) return undefined;
  const types = new Set<string>();
  for (const member of members) {
    const inner = admittedTypes(member);
    if (!inner) return undefined;
    for (const t of inner) types.add(t);
  }
  return types;
}

/** For each declared field of the route's input schema, that field set to each JSON type it does not admit. */
function wrongTypeCases(route: RouteDef, valid: Record<string, unknown>): InvalidCase[] {
  const schema = z.toJSONSchema(route.input, { io: "input", unrepresentable: "any" }) as JsonSchema;
  const cases: InvalidCase[] = [];
  for (const [field, fieldSchema] of Object.entries(schema.properties ?? {})) {
    const admitted = admittedTypes(fieldSchema);
    if (!admitted) continue;
    for (const [type, sample] of WRONG_TYPE_SAMPLES) {
      if (!admitted.has(type)) cases.push({ why: `${field} given as ${type}`, input: { ...valid, [field]: sample }, path: [field] });
    }
  }
  return cases;
}

const startsWith = (path: string[], prefix: string[]) => prefix.every((segment, i) => path[i] === segment);

/** The top-level fields a route declares, from its JSON Schema. */
const declaredFields = (route: RouteDef) =>
  Object.keys((z.toJSONSchema(route.input, { io: "input", unrepresentable: "any" }) as JsonSchema).properties ?? {});

/**
 * Misspellings of a field a client plausibly sends: the other case
 * convention (job_id for jobId, jobId for job_id), kebab case, capitals.
 */
function nearMisses(field: string): string[] {
  const snake = field.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
  const camel = field.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
  const variants = [snake, camel, snake.replaceAll("_", "-"), field.toUpperCase(), field[0]!.toUpperCase() + field.slice(1)];
  return [...new Set(variants)].filter((v) => v !== field);
}

test("no two fields of a route differ only in case, '_' or '-' (a near miss must name one field)", () => {
  for (const route of apiRoutes) {
    const loose = declaredFields(route).map((f) => f.toLowerCase().replace(/[_-]/g, ""));
    expect({ route: route.path, loose: new Set(loose).size }).toEqual({ route: route.path, loose: loose.length });
  }
});

test("every route in apiRoutes has a fixture in test/http/route-fixtures.ts", () => {
  expect(apiRoutes.length).toBeGreaterThan(0);
  const missing = apiRoutes.map((r) => r.path).filter((path) => !routeFixtures[path]);
  expect(missing).toEqual([]);
});

for (const route of apiRoutes) {
  describe(`${route.path} (shared bad-input suite)`, () => {
    const fixture = routeFixtures[route.path];
    if (!fixture) {
      test("has a fixture", () => {
        throw new Error(`No fixture for ${route.path}: add one to test/http/route-fixtures.ts.`);
      });
      return;
    }
    if (skippedWithoutChromium(fixture)) return;

    test("a valid input succeeds in both body forms, and unknown extra fields are ignored", async () => {
      expectOk(await server.post(route.path, await fixture.valid({ server })), false);
      expectOk(await server.post(route.path, envelop(await fixture.valid({ server }))), true);
      expectOk(await server.post(route.path, envelop(await fixture.valid({ server }), { v: 1 })), true);
      const extra = { ...(await fixture.valid({ server })), unknown_future_field: "from a newer CLI", another: { nested: [1, 2] } };
      expectOk(await server.post(route.path, extra), false);
      expectOk(await server.post(route.path, envelop({ ...(await fixture.valid({ server })), unknown_future_field: 1 })), true);
    });

    test("a near miss of a field (job_id for jobId, Workflow for workflow) is a 400 naming both, in both forms, and nothing changes", async () => {
      const fields = declaredFields(route);
      const cases = fields.flatMap((field) => nearMisses(field).filter((m) => !fields.includes(m)).map((miss) => ({ field, miss })));
      if (fields.length === 0) return;
      await eachCase(
        cases,
        (c) => `${c.miss} for ${c.field}`,
        async ({ field, miss }) => {
          const valid = await fixture.valid({ server });
          const input = { ...valid, [miss]: valid[field] ?? "x" };
          await expectNoChange(async () => {
            for (const enveloped of [false, true]) {
              const error = expectError(await server.post(route.path, enveloped ? envelop(input) : input), 400, "BAD_REQUEST", enveloped);
              expect(error.message).toBe(`Unknown field "${miss}"; did you mean "${field}"?`);
              expect(error.data.issues).toEqual([{ path: [miss], message: expect.stringContaining(`"${field}"`) }]);
            }
          });
        },
      );
    });

    test("401 without an API key, in both forms, and nothing changes", async () => {
      const valid = await fixture.valid({ server });
      await expectNoChange(async () => {
        expectUnauthorized(await server.post(route.path, valid, { key: null }), false);
        expectUnauthorized(await server.post(route.path, envelop(valid), { key: null }), true);
        expectUnauthorized(await server.post(route.path, valid, { key: "" }), false);
        expectUnauthorized(await server.post(route.path, "", { key: null }), false);
      });
    });

    test("401 with an unknown API key, in both forms, and nothing changes", async () => {
      const valid = await fixture.valid({ server });
      const altered = server.keys.alpha.slice(0, -1) + (server.keys.alpha.endsWith("A") ? "B" : "A");
      await eachCase(
        ["usk_this_key_was_never_issued", altered, "not even a key", server.keys.alpha.toUpperCase()],
        (key) => `key ${JSON.stringify(key)}`,
        async (key) =>
          expectNoChange(async () => {
            expectUnauthorized(await server.post(route.path, valid, { key }), false);
            expectUnauthorized(await server.post(route.path, envelop(valid), { key }), true);
          }),
      );
    });

    test("400 for malformed JSON with a valid key, and nothing changes", async () => {
      await eachCase(
        ["{", '{"name":', "not json", "{'name':'x'}", '{"json":{}', '{"name":"x",}', "\u0000"],
        (body) => `body ${JSON.stringify(body)}`,
        async (body) =>
          expectNoChange(async () => {
            const error = expectError(await server.post(route.path, body), 400, "BAD_REQUEST", false);
            expect(error.message).toContain("JSON");
          }),
      );
    });

    test("400 with data.issues for a body that is not an object, in both forms, and nothing changes", async () => {
      const notObjects: unknown[] = [[], ["name"], "x", 5, true, null];
      await eachCase(
        notObjects,
        (body) => `plain ${JSON.stringify(body)}`,
        async (body) => expectNoChange(async () => void expectValidationError(await server.post(route.path, JSON.stringify(body)), false)),
      );
      await eachCase(
        notObjects.filter((b) => b !== null),
        (body) => `enveloped ${JSON.stringify(body)}`,
        async (body) =>
          expectNoChange(async () => {
            expectValidationError(await server.post(route.path, envelop(body)), true);
            expectValidationError(await server.post(route.path, envelop(body, {})), true);
          }),
      );
    });

    test("400 with data.issues at the field for wrong types and bad formats, in both forms, and nothing changes", async () => {
      const valid = await fixture.valid({ server });
      const cases = [...wrongTypeCases(route, valid), ...fixture.invalid(valid)];
      const declaresFields = Object.keys((z.toJSONSchema(route.input, { io: "input" }) as JsonSchema).properties ?? {}).length > 0;
      if (!declaresFields) {
        expect(cases).toEqual([]);
        return;
      }
      await eachCase(
        cases,
        (c) => c.why,
        async (c) =>
          expectNoChange(async () => {
            for (const enveloped of [false, true]) {
              const response = await server.post(route.path, enveloped ? envelop(c.input) : c.input);
              const issues = expectValidationError(response, enveloped);
              expect(issues.some((issue) => startsWith(issue.path, c.path))).toBe(true);
            }
          }),
      );
    });

    test("405 with Allow: POST for methods other than POST, in the request's form", async () => {
      await eachCase(
        ["GET", "PUT", "PATCH", "DELETE", "OPTIONS"],
        (method) => method,
        async (method) => {
          const valid = method === "GET" || method === "OPTIONS" ? undefined : await fixture.valid({ server });
          await expectNoChange(async () => {
            const response = await sendRequest(server, method, route.path, { body: valid });
            const error = expectError(response, 405, "METHOD_NOT_ALLOWED", false);
            expect(response.headers.get("allow")).toBe("POST");
            expect(error.message).toContain("POST");
            expect(error.data).toEqual({ allow: ["POST"] });
            if (valid !== undefined) {
              expectError(await sendRequest(server, method, route.path, { body: envelop(valid) }), 405, "METHOD_NOT_ALLOWED", true);
            }
          });
        },
      );
    });
  });
}
