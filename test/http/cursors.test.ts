/**
 * List cursors (issue 9, item 7): a cursor says nothing of other tenants'
 * activity, is refused (400) anywhere but the list and tenant it was given
 * to, and paging still returns every row exactly once while rows are added.
 * Every list with a cursor is covered: jobs/list, logs/list,
 * webhooks/deliveries, deployments/list and credentials/list.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomId, type IdSource } from "../../src/clock";
import { createApiKey, createTenant } from "../../src/tenants/service";
import { workflow } from "../../src/workflows/define";
import { uploadBase64 } from "../deployments/upload";
import { addTenant, newMasterKey, snapshotDb, startTestServer, uniqueName, type TestServer } from "../helpers";
import { eventually } from "../jobs/support";
import { expectError, expectOk } from "./wire";

const noop = workflow("cursor-noop", () => null);

/** Follows a list's cursors from the start; returns the pages' rows and the cursors given out. */
async function pageThrough(
  server: TestServer,
  key: string,
  path: string,
  input: Record<string, unknown>,
  rows: (output: any) => string[],
  field = "cursor",
  next = "next_cursor",
): Promise<{ seen: string[]; cursors: string[] }> {
  const seen: string[] = [];
  const cursors: string[] = [];
  let cursor: string | null = null;
  for (let page = 0; page < 200; page++) {
    const output: any = expectOk(await server.post(path, cursor === null ? input : { ...input, [field]: cursor }, { key }), false);
    seen.push(...rows(output));
    cursor = output[next];
    if (cursor === null) return { seen, cursors };
    cursors.push(cursor!);
  }
  throw new Error(`${path} never ended`);
}

const jobIds = (output: any): string[] => output.jobs.map((j: any) => j.job_id);

describe("a cursor says nothing of other tenants", () => {
  /**
   * The same tenant does the same things in two servers with the same master
   * key and the same ids; in the second, another tenant writes between each
   * of its jobs. Its cursors must come out the same in both: a global row
   * counter (what cursors were) would differ by the other tenant's writes.
   */
  test("tenant A's jobs/list cursors are identical whether or not tenant B wrote in between", async () => {
    const masterKey = newMasterKey().text;
    const tenantId = "0190b2c4-0000-7000-8000-00000000000a";

    async function world(otherTenantWrites: number): Promise<{ cursors: string[]; seen: string[] }> {
      // Ids come from two streams, so B's writes cannot shift A's ids.
      const streams = { a: 0, b: 0 };
      let stream: "a" | "b" = "a";
      const newId: IdSource = () => {
        streams[stream] += 1;
        const prefix = stream === "a" ? "0190b2c4-0000-7000-8000-" : "0190b2c4-0000-7000-9000-";
        return prefix + streams[stream].toString(16).padStart(12, "0");
      };
      const server = await startTestServer({ workflows: [noop], runnerPaused: true, masterKey, newId });
      try {
        await createTenant(server.db, server.deps.clock, () => tenantId, "tenant_a");
        const a = (await createApiKey(server.db, server.deps.clock, randomId, tenantId)).key;
        for (let i = 0; i < 6; i++) {
          stream = "a";
          expectOk(await server.post("/v1/jobs/create", { workflow: noop.name, params: { i } }, { key: a }), false);
          stream = "b";
          for (let j = 0; j < otherTenantWrites; j++) {
            expectOk(await server.post("/v1/jobs/create", { workflow: noop.name }, { key: server.keys.beta }), false);
          }
        }
        stream = "a";
        return await pageThrough(server, a, "/v1/jobs/list", { limit: 2 }, jobIds);
      } finally {
        await server.close();
      }
    }

    const quiet = await world(0);
    const busy = await world(7);
    expect(quiet.seen).toHaveLength(6);
    expect(busy.seen).toEqual(quiet.seen);
    expect(quiet.cursors).toHaveLength(2);
    expect(busy.cursors).toEqual(quiet.cursors);
  });
});

describe("every cursor list", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ workflows: [noop], runnerPaused: true });
  });
  afterAll(async () => server.close());

  interface CursorList {
    path: string;
    field: string;
    next: string;
    /** Seeds at least three rows for tenant `key`; returns the input that lists them one per page. */
    seed(key: string): Promise<Record<string, unknown>>;
  }

  /** Jobs with their own callback to a host that resolves to loopback: refused at the attempt, so each ends in one failed delivery. */
  async function endedJobsWithDeliveries(key: string, n: number): Promise<void> {
    for (let i = 0; i < n; i++) {
      const created = expectOk(
        await server.post(
          "/v1/jobs/create",
          { workflow: noop.name, callback_url: "http://localhost:9/cursor-test", callback_secret: "a-callback-secret-of-32-bytes..." },
          { key },
        ),
        false,
      );
      expectOk(await server.post("/v1/jobs/cancel", { id: created.job_id }, { key }), false);
    }
    await eventually("deliveries settled", async () => {
      const output = expectOk(await server.post("/v1/webhooks/deliveries", { status: "pending" }, { key }), false);
      return output.deliveries.length === 0;
    });
  }

  const lists: CursorList[] = [
    {
      path: "/v1/jobs/list",
      field: "cursor",
      next: "next_cursor",
      async seed(key) {
        for (let i = 0; i < 3; i++) expectOk(await server.post("/v1/jobs/create", { workflow: noop.name }, { key }), false);
        return { limit: 1 };
      },
    },
    {
      path: "/v1/logs/list",
      field: "pageToken",
      next: "nextPageToken",
      async seed(key) {
        // Each hosted-only option is noted in the job's log at creation.
        const input = { workflow: noop.name, gpu: true, disable_default_proxy: true, credential_id: "hosted-only" };
        expectOk(await server.post("/v1/jobs/create", input, { key }), false);
        return { limit: 1 };
      },
    },
    {
      path: "/v1/webhooks/deliveries",
      field: "cursor",
      next: "next_cursor",
      async seed(key) {
        await endedJobsWithDeliveries(key, 3);
        return { limit: 1 };
      },
    },
    {
      path: "/v1/deployments/list",
      field: "cursor",
      next: "next_cursor",
      async seed(key) {
        for (let i = 0; i < 3; i++) {
          const source = await uploadBase64({ workflows: [{ name: uniqueName("deployed"), body: "return null;" }] });
          expectOk(await server.post("/v1/deployments/create", { source, entry_point: "index.js" }, { key }), false);
        }
        await server.deps.deployments.idle();
        return { limit: 1 };
      },
    },
    {
      path: "/v1/credentials/list",
      field: "cursor",
      next: "next_cursor",
      async seed(key) {
        for (const name of ["cred_b", "cred_a", "cred_c"]) {
          expectOk(await server.post("/v1/credentials/create", { name, value: `value of ${name}` }, { key }), false);
        }
        return { limit: 1 };
      },
    },
  ];

  /** A cursor of each list, given to a tenant of its own. */
  const given = new Map<string, { cursor: string; input: Record<string, unknown>; key: string }>();
  let other: { key: string };
  beforeAll(async () => {
    const b = await addTenant(server, uniqueName("cursor_b"));
    other = b;
    for (const list of lists) {
      // A tenant per list, so that seeding one list adds no rows to another's.
      const a = await addTenant(server, uniqueName("cursor_a"));
      const input = await list.seed(a.key);
      await list.seed(b.key);
      const output = expectOk(await server.post(list.path, input, { key: a.key }), false);
      expect(typeof output[list.next]).toBe("string");
      given.set(list.path, { cursor: output[list.next], input, key: a.key });
    }
  });

  /** The 400 of a cursor that may not be used here, naming the field; nothing changes. */
  async function expectRefused(path: string, field: string, input: Record<string, unknown>, key: string) {
    const before = await snapshotDb(server.db);
    const error = expectError(await server.post(path, input, { key }), 400, "BAD_REQUEST", false);
    expect(error.data.issues.map((i: { path: string[] }) => i.path)).toEqual([[field]]);
    expect(error.message).toContain(field);
    expect(error.message).toContain("start again without it");
    expect(await snapshotDb(server.db)).toEqual(before);
  }

  for (const list of lists) {
    test(`${list.path}: the cursor works for its tenant, in both body forms, and is the same each time`, async () => {
      const { cursor, input, key } = given.get(list.path)!;
      const output = expectOk(await server.post(list.path, { ...input, [list.field]: cursor }, { key }), false);
      expect(expectOk(await server.post(list.path, { json: { ...input, [list.field]: cursor } }, { key }), true)).toEqual(output);
      const again = expectOk(await server.post(list.path, input, { key }), false);
      expect(again[list.next]).toBe(cursor);
    });

    test(`${list.path}: another tenant's cursor is a 400 and shows nothing`, async () => {
      const { cursor, input } = given.get(list.path)!;
      await expectRefused(list.path, list.field, { ...input, [list.field]: cursor }, other.key);
    });

    test(`${list.path}: another list's cursor is a 400`, async () => {
      const { input, key } = given.get(list.path)!;
      for (const elsewhere of lists.filter((l) => l.path !== list.path)) {
        await expectRefused(list.path, list.field, { ...input, [list.field]: given.get(elsewhere.path)!.cursor }, key);
      }
    });

    test(`${list.path}: a damaged or made-up cursor is a 400`, async () => {
      const { cursor, input, key } = given.get(list.path)!;
      const bytes = Buffer.from(cursor, "base64url");
      const damaged: string[] = ["garbage", "!!", `${cursor}=`, cursor.slice(0, -1), `${cursor}A`, Buffer.from("c125").toString("base64url")];
      for (let i = 0; i < bytes.length; i += 3) {
        const flipped = Buffer.from(bytes);
        flipped[i]! ^= 0x01;
        damaged.push(flipped.toString("base64url"));
      }
      for (const bad of damaged) await expectRefused(list.path, list.field, { ...input, [list.field]: bad }, key);
    });
  }

  test("a logs/list page token holds no readable row number", async () => {
    const a = await addTenant(server, uniqueName("logs_a"));
    const input = { workflow: noop.name, gpu: true, disable_default_proxy: true, credential_id: "hosted-only" };
    const jobId = expectOk(await server.post("/v1/jobs/create", input, { key: a.key }), false).job_id;
    const { cursors } = await pageThrough(server, a.key, "/v1/logs/list", { jobId, limit: 1 }, (o) => o.logs.map((l: any) => l.message), "pageToken", "nextPageToken");
    const rowIds = (await server.db.selectFrom("job_logs").select("id").where("job_id", "=", jobId).orderBy("id").execute()).map((r) => r.id);
    expect(cursors).toHaveLength(rowIds.length - 1);
    for (const [i, token] of cursors.entries()) {
      const id = rowIds[i]!;
      const bytes = Buffer.from(token, "base64url");
      const be = Buffer.alloc(8);
      be.writeBigUInt64BE(BigInt(id));
      const le = Buffer.alloc(8);
      le.writeBigUInt64LE(BigInt(id));
      expect(bytes.includes(be)).toBe(false);
      expect(bytes.includes(le)).toBe(false);
    }
    // Tokens of neighbouring lines are as unlike as random bytes: the same
    // length, and (nearly) every byte different. An encoded counter
    // ("c125" -> "c126") changes a digit or two.
    for (let i = 1; i < cursors.length; i++) {
      const [x, y] = [Buffer.from(cursors[i - 1]!, "base64url"), Buffer.from(cursors[i]!, "base64url")];
      expect(y.length).toBe(x.length);
      const same = x.filter((byte, j) => byte === y[j]).length;
      expect(same).toBeLessThan(x.length / 4);
    }
  });
});

describe("paging while rows are added", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ workflows: [noop], runnerPaused: true });
  });
  afterAll(async () => server.close());

  test("jobs/list: every job that existed when paging began, exactly once, newest first, while both tenants add jobs", async () => {
    const a = await addTenant(server, uniqueName("paging_a"));
    const b = await addTenant(server, uniqueName("paging_b"));
    const create = async (key: string) => expectOk(await server.post("/v1/jobs/create", { workflow: noop.name }, { key }), false).job_id as string;
    const existing: string[] = [];
    for (let i = 0; i < 25; i++) existing.push(await create(a.key));
    const added: string[] = [];
    const first = expectOk(await server.post("/v1/jobs/list", { limit: 4 }, { key: a.key }), false);
    const seen: string[] = jobIds(first);
    let cursor: string | null = first.next_cursor;
    for (let page = 0; cursor !== null && page < 100; page++) {
      // Each later page is read while both tenants add jobs: A's are newer than every page to come.
      const [response, ...more] = await Promise.all([
        server.post("/v1/jobs/list", { limit: 4, cursor }, { key: a.key }),
        create(a.key),
        create(b.key),
        create(a.key),
        create(b.key),
      ]);
      const output = expectOk(response as Awaited<ReturnType<typeof server.post>>, false);
      seen.push(...jobIds(output));
      cursor = output.next_cursor;
      added.push(more[0] as string, more[2] as string);
    }
    expect(cursor).toBeNull();
    expect(seen).toEqual([...existing].reverse());
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen.some((id) => added.includes(id))).toBe(false);
  });

  test("credentials/list: every credential exactly once in name order, while credentials are added on both sides of the cursor", async () => {
    const a = await addTenant(server, uniqueName("paging_c"));
    const create = async (name: string) =>
      expectOk(await server.post("/v1/credentials/create", { name, value: `v-${name}` }, { key: a.key }), false);
    const names = Array.from({ length: 30 }, (_, i) => `name_${String(i * 10).padStart(4, "0")}`);
    for (const name of [...names].reverse()) await create(name);
    const seen: string[] = [];
    const added: string[] = [];
    let cursor: string | null = null;
    for (let page = 0; page < 100; page++) {
      const output: any = expectOk(await server.post("/v1/credentials/list", cursor === null ? { limit: 7 } : { limit: 7, cursor }, { key: a.key }), false);
      seen.push(...output.credentials.map((c: { name: string }) => c.name));
      cursor = output.next_cursor;
      if (cursor === null) break;
      // One name before the cursor (not listed again) and one after it (listed once, in its place).
      const after = `${seen[seen.length - 1]!}_after`;
      await Promise.all([create(`a_${page}`), create(after)]);
      added.push(after);
    }
    expect(cursor).toBeNull();
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen).toEqual([...seen].sort());
    for (const name of [...names, ...added]) expect(seen.filter((n) => n === name)).toHaveLength(1);
    expect(seen.filter((n) => n.startsWith("a_"))).toEqual([]);
  });
});

describe("credentials/list paging", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(async () => server.close());

  test("without limit or cursor: every credential in one answer, exactly as before (no next_cursor)", async () => {
    const a = await addTenant(server, uniqueName("all"));
    const names = Array.from({ length: 250 }, (_, i) => `c_${String(i).padStart(3, "0")}`);
    for (const name of names) expectOk(await server.post("/v1/credentials/create", { name, value: "v" }, { key: a.key }), false);
    for (const body of [{}, { json: {} }, ""]) {
      const response = await server.post("/v1/credentials/list", body, { key: a.key });
      const output = expectOk(response, typeof body === "object" && "json" in body);
      expect(Object.keys(output)).toEqual(["credentials"]);
      expect(output.credentials.map((c: { name: string }) => c.name)).toEqual(names);
    }
  });

  test("with limit: pages of that size in name order, each credential exactly once, next_cursor null at the end", async () => {
    const a = await addTenant(server, uniqueName("paged"));
    const names = Array.from({ length: 23 }, (_, i) => `p_${String(i).padStart(2, "0")}`);
    for (const name of [...names].reverse()) expectOk(await server.post("/v1/credentials/create", { name, value: "v" }, { key: a.key }), false);
    for (const limit of [1, 5, 23, 100]) {
      const { seen, cursors } = await pageThrough(server, a.key, "/v1/credentials/list", { limit }, (o) => o.credentials.map((c: any) => c.name));
      expect(seen).toEqual(names);
      expect(cursors).toHaveLength(Math.ceil(names.length / limit) - 1);
    }
    const last = expectOk(await server.post("/v1/credentials/list", { limit: 23 }, { key: a.key }), false);
    expect(Object.keys(last).sort()).toEqual(["credentials", "next_cursor"]);
    expect(last.next_cursor).toBeNull();
    // A cursor without a limit: a page of the default size (100), here the rest.
    const first = expectOk(await server.post("/v1/credentials/list", { limit: 20 }, { key: a.key }), false);
    const rest = expectOk(await server.post("/v1/credentials/list", { cursor: first.next_cursor }, { key: a.key }), false);
    expect(rest.credentials.map((c: any) => c.name)).toEqual(names.slice(20));
    expect(rest.next_cursor).toBeNull();
  });

  test("limit is 1..1000", async () => {
    for (const limit of [0, 1001, 2.5, -1]) {
      const error = expectError(await server.post("/v1/credentials/list", { limit }), 400, "BAD_REQUEST", false);
      expect(error.data.issues[0].path).toEqual(["limit"]);
    }
  });
});
