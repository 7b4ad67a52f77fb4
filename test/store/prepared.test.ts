import { afterAll, describe, expect, test } from "bun:test";
import fc from "fast-check";
import { PreparedQuery } from "../../src/store/prepared";
import { startTestServer, type TestServer } from "../helpers";

// Issue 13: hot-path queries are built and compiled by Kysely once, then run
// again with other values. They must answer exactly what the builder does.

let server: TestServer;
afterAll(async () => server?.close());

const byTenantAndPrefix = new PreparedQuery<{ tenantId: string; after: string }, { name: string; version: number }>((db, slot) =>
  db
    .selectFrom("credentials")
    .select(["name", "version"])
    .where("tenant_id", "=", slot("tenantId"))
    .where("name", ">", slot("after"))
    // A constant of the query itself stays in its place among the parameters.
    .where("version", ">=", 1)
    .orderBy("name"),
);

describe("PreparedQuery", () => {
  test("answers what the same query built each time answers, for any values, on this engine", async () => {
    server = await startTestServer();
    for (const [name, value] of [["alpha_1", "v"], ["beta_2", "v"], ["gamma_3", "v"]]) await server.post("/v1/credentials/upsert", { name, value });
    await server.post("/v1/credentials/upsert", { name: "zeta", value: "w" }, { key: server.keys.beta });
    const tenants = [server.tenants.alpha, server.tenants.beta, "no-such-tenant"];
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...tenants), fc.string({ maxLength: 8 }), async (tenantId, after) => {
        const built = await server.db
          .selectFrom("credentials")
          .select(["name", "version"])
          .where("tenant_id", "=", tenantId)
          .where("name", ">", after)
          .where("version", ">=", 1)
          .orderBy("name")
          .execute();
        expect(await byTenantAndPrefix.execute(server.db, { tenantId, after })).toEqual(built);
      }),
      { numRuns: 60 },
    );
    const compiled = byTenantAndPrefix.compiled(server.db);
    expect(compiled.slots.map((s) => s.name ?? s.constant)).toEqual(["tenantId", "after", 1]);
    // Compiled once: the same object every time.
    expect(byTenantAndPrefix.compiled(server.db)).toBe(compiled);
  });

  test("a slot the query does not use is a mistake, named when it is compiled", () => {
    const unused = new PreparedQuery<{ tenantId: string; name: string }, unknown>((db, slot) => {
      slot("name");
      return db.selectFrom("credentials").select("id").where("tenant_id", "=", slot("tenantId"));
    });
    expect(() => unused.compiled(server.db)).toThrow('the slot "name" is not among the compiled parameters');
  });
});
