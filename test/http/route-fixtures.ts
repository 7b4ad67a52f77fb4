/**
 * One fixture per API route, for the shared suites that run against every
 * route in `apiRoutes` (bad-input.test.ts, tenant-isolation.test.ts).
 *
 * A route without a fixture fails those suites: when you add a route (jobs,
 * webhooks, schedules...), add its entry to `routeFixtures` below, in the
 * same commit. Keep each fixture self-contained: it seeds what it needs
 * through the API, with names from `uniqueName`, so no test depends on
 * another's data.
 */
import { expect } from "bun:test";
import { uniqueName, type TestResponse, type TestServer } from "../helpers";
import { expectError, expectOk, UUID } from "./wire";

export type Tenant = "alpha" | "beta";

export interface FixtureContext {
  server: TestServer;
}

/** An input the route must reject with 400 and an issue whose path starts with `path`. */
export interface InvalidCase {
  why: string;
  input: unknown;
  path: string[];
}

/** What tenant beta sends naming alpha's rows, and what beta and alpha must observe. */
export interface OtherTenantCase {
  /** The input beta sends; it names rows alpha owns (ids, names). */
  input: Record<string, unknown>;
  /** Beta's response: usually `expectNotFound`; an empty list for list routes. */
  expectResponse(response: TestResponse): void;
  /** After beta's call, alpha still sees its rows as they were (through the API). */
  alphaStillSees(): Promise<void>;
}

export interface RouteFixture {
  /**
   * Seeds what a successful call needs, as tenant alpha, and returns a fresh
   * valid input. Called once per check, so it must not collide with itself
   * (use uniqueName).
   */
  valid(ctx: FixtureContext): Promise<Record<string, unknown>>;
  /**
   * Bad formats the route must reject, derived from a valid input. Wrong
   * JSON types of every declared field are generated from the route's
   * schema by the suite; list here what a type cannot say (patterns,
   * lengths, ids that are not UUIDs, cross-field rules).
   */
  invalid(valid: Record<string, unknown>): InvalidCase[];
  /** Tenant isolation: seeds rows as alpha, returns what beta sends and expects. */
  otherTenant(ctx: FixtureContext): Promise<OtherTenantCase>;
}

// ---------------------------------------------------------------------------
// Shared seeding and expectations.

export interface SeededCredential {
  id: string;
  name: string;
  value: string;
}

/** Stores a credential through the API for `tenant` (default alpha). */
export async function seedCredential(
  server: TestServer,
  options: { tenant?: Tenant; name?: string; value?: string } = {},
): Promise<SeededCredential> {
  const name = options.name ?? uniqueName("cred");
  const value = options.value ?? `value-of-${name}-${crypto.randomUUID()}`;
  const response = await server.post("/v1/credentials/create", { name, value }, { key: server.keys[options.tenant ?? "alpha"] });
  const output = expectOk(response, false);
  expect(output.credential_id).toMatch(UUID);
  return { id: output.credential_id, name, value };
}

/** The credential reads back with this id and value for `tenant` (default alpha). */
export async function expectCredential(server: TestServer, credential: SeededCredential, tenant: Tenant = "alpha"): Promise<void> {
  const response = await server.post("/v1/credentials/get", { name: credential.name }, { key: server.keys[tenant] });
  expect(expectOk(response, false)).toEqual({ id: credential.id, value: credential.value });
}

export function expectNotFound(response: TestResponse): void {
  expectError(response, 404, "NOT_FOUND", false);
}

const TOO_LONG_NAME = "a".repeat(129);
const NOT_A_UUID = "not-a-uuid";

const badNames = (valid: Record<string, unknown>, field = "name"): InvalidCase[] => [
  { why: "a name with a hyphen", input: { ...valid, [field]: "bad-name" }, path: [field] },
  { why: "a name with a space inside", input: { ...valid, [field]: "bad name" }, path: [field] },
  { why: "an empty name", input: { ...valid, [field]: "" }, path: [field] },
  { why: "a whitespace-only name", input: { ...valid, [field]: "   " }, path: [field] },
  { why: "a name of 129 characters", input: { ...valid, [field]: TOO_LONG_NAME }, path: [field] },
  { why: "a name with a non-ASCII letter", input: { ...valid, [field]: "pässword" }, path: [field] },
];

const badIds = (valid: Record<string, unknown>): InvalidCase[] => [
  { why: "an id that is not a UUID", input: { ...valid, id: NOT_A_UUID }, path: ["id"] },
  { why: "an empty id", input: { ...valid, id: "" }, path: ["id"] },
];

// ---------------------------------------------------------------------------
// The table. Keyed by route path; every path in apiRoutes needs an entry.

export const routeFixtures: Record<string, RouteFixture> = {
  "/v1/credentials/create": {
    async valid() {
      return { name: uniqueName("create"), value: "create-value" };
    },
    invalid: (valid) => [
      ...badNames(valid),
      { why: "an empty value", input: { ...valid, value: "" }, path: ["value"] },
      { why: "no name", input: { value: "v" }, path: ["name"] },
      { why: "no value", input: { name: "only_name" }, path: ["value"] },
    ],
    async otherTenant({ server }) {
      // A name is per tenant: beta creating alpha's name gets its own credential.
      const alpha = await seedCredential(server);
      return {
        input: { name: alpha.name, value: "beta-value" },
        expectResponse(response) {
          const output = expectOk(response, false);
          expect(output.credential_id).toMatch(UUID);
          expect(output.credential_id).not.toBe(alpha.id);
        },
        alphaStillSees: () => expectCredential(server, alpha),
      };
    },
  },

  "/v1/credentials/upsert": {
    async valid() {
      return { name: uniqueName("upsert"), value: "upsert-value" };
    },
    invalid: (valid) => [
      ...badNames(valid),
      { why: "an empty value", input: { ...valid, value: "" }, path: ["value"] },
      { why: "no name", input: { value: "v" }, path: ["name"] },
      { why: "no value", input: { name: "only_name" }, path: ["value"] },
    ],
    async otherTenant({ server }) {
      // Beta's upsert of alpha's name must not overwrite alpha's credential.
      const alpha = await seedCredential(server);
      return {
        input: { name: alpha.name, value: "beta-overwrite-attempt" },
        expectResponse(response) {
          const output = expectOk(response, false);
          expect(output.overwritten).toBe(false);
          expect(output.credential_id).not.toBe(alpha.id);
        },
        alphaStillSees: () => expectCredential(server, alpha),
      };
    },
  },

  "/v1/credentials/list": {
    async valid() {
      return {};
    },
    invalid: () => [],
    async otherTenant({ server }) {
      const alpha = await seedCredential(server);
      return {
        input: {},
        expectResponse(response) {
          const output = expectOk(response, false);
          expect(Array.isArray(output.credentials)).toBe(true);
          const ids = output.credentials.map((c: { credential_id: string }) => c.credential_id);
          expect(ids).not.toContain(alpha.id);
          expect(response.text).not.toContain(alpha.value);
        },
        alphaStillSees: async () => {
          const output = expectOk(await server.post("/v1/credentials/list", {}), false);
          expect(output.credentials.map((c: { credential_id: string }) => c.credential_id)).toContain(alpha.id);
        },
      };
    },
  },

  "/v1/credentials/get": {
    async valid({ server }) {
      const seeded = await seedCredential(server);
      return { name: seeded.name };
    },
    invalid: (valid) => [...badNames(valid), { why: "no name", input: {}, path: ["name"] }],
    async otherTenant({ server }) {
      const alpha = await seedCredential(server);
      return {
        input: { name: alpha.name },
        expectResponse(response) {
          expectNotFound(response);
          expect(response.text).not.toContain(alpha.value);
        },
        alphaStillSees: () => expectCredential(server, alpha),
      };
    },
  },

  "/v1/credentials/update": {
    async valid({ server }) {
      const seeded = await seedCredential(server);
      return { id: seeded.id, value: "updated-value" };
    },
    invalid: (valid) => [
      ...badIds(valid),
      ...badNames(valid),
      { why: "an empty value", input: { ...valid, value: "" }, path: ["value"] },
      { why: "neither a value nor a name", input: { id: valid.id }, path: ["value"] },
      { why: "no id", input: { value: "v" }, path: ["id"] },
    ],
    async otherTenant({ server }) {
      const alpha = await seedCredential(server);
      return {
        input: { id: alpha.id, value: "beta-overwrite-attempt", name: uniqueName("stolen") },
        expectResponse: expectNotFound,
        alphaStillSees: () => expectCredential(server, alpha),
      };
    },
  },

  "/v1/credentials/delete": {
    async valid({ server }) {
      const seeded = await seedCredential(server);
      return { id: seeded.id };
    },
    invalid: (valid) => [...badIds(valid), { why: "no id", input: {}, path: ["id"] }],
    async otherTenant({ server }) {
      const alpha = await seedCredential(server);
      return {
        input: { id: alpha.id },
        expectResponse: expectNotFound,
        alphaStillSees: () => expectCredential(server, alpha),
      };
    },
  },
};
