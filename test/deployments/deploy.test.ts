import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { existsSync, readdirSync, rmSync } from "node:fs";
import { basename, join } from "node:path";
import { call, killChild, serveDeployment, waitForBuild, waitForJob, type ServeDeployment } from "../e2e/serve-child";
import { tempDir } from "../helpers";
import { freshSchema, onPostgres, rawRows } from "../postgres";
import { loadConfig } from "../../src/config";
import { randomId, systemClock } from "../../src/clock";
import { openStore } from "../../src/server/start";
import { createApiKey, createTenant } from "../../src/tenants/service";
import { toMasterKey } from "../../src/vault/master-key";
import type { ServerProcess } from "../process-helpers";
import { tarBase64, uploadBase64, type UploadOptions } from "./upload";

/**
 * `libretto cloud deploy` against a real `serve` process: the upload goes
 * from building to ready, its jobs run in worker processes with their
 * declared credentials only, a newer deployment replaces it for new jobs
 * while a running job finishes on its own version, and all of it survives a
 * restart.
 */

let deployment: ServeDeployment;
/** On the PostgreSQL run: the schema the server (and the CLI that seeds it) use. */
let schema: Awaited<ReturnType<typeof freshSchema>> | undefined;
let workflowsDir: { path: string; remove(): void };
let server: ServerProcess;
let alpha: string;
let beta: string;
/** A 127.0.0.1 server a handler can wait on: /hold/<name> answers once the test releases <name>. */
let holds: { url: string; release(name: string): void; waiting(name: string): boolean; stop(): void };

beforeAll(async () => {
  workflowsDir = tempDir("understudy-no-workflows-");
  schema = onPostgres ? await freshSchema() : undefined;
  deployment = serveDeployment({
    workflowsDir: workflowsDir.path,
    // A short build lease: the sweep that prunes stored uploads runs every half lease.
    env: { UNDERSTUDY_JOB_GRACE_MS: "1000", UNDERSTUDY_DEPLOY_BUILD_LEASE_MS: "2000", ...(schema ? { UNDERSTUDY_DATABASE_URL: schema.url } : {}) },
  });
  const keys = schema ? await seedPostgres(schema.url, ["alpha", "beta"]) : [await deployment.addTenant("alpha"), await deployment.addTenant("beta")];
  [alpha, beta] = [keys[0]!, keys[1]!];
  server = await deployment.start();
  holds = holdServer();
});

afterAll(async () => {
  await killChild(server);
  holds?.stop();
  deployment?.remove();
  workflowsDir?.remove();
  await schema?.drop();
});

/** SQL on the server's database, as someone with access to it (either engine). */
async function rawSql(query: string): Promise<Record<string, unknown>[]> {
  if (schema) return rawRows(schema.url, query);
  const db = new Database(deployment.dbPath);
  try {
    return db.query(query).all() as Record<string, unknown>[];
  } finally {
    db.close();
  }
}

/** The deployment's folder on the server's disk. */
function folderOf(id: string): string | undefined {
  const root = join(deployment.cwd, "deployments");
  for (const tenant of readdirSync(root)) if (existsSync(join(root, tenant, id))) return join(root, tenant, id);
  return undefined;
}

/** The CLI's tenant commands open SQLite only: on PostgreSQL the tenants and keys are made through the store. */
async function seedPostgres(url: string, names: string[]): Promise<string[]> {
  const config = loadConfig({ UNDERSTUDY_DATABASE_URL: url, UNDERSTUDY_DB_POOL_SIZE: "2" });
  const key = toMasterKey(new Uint8Array(Buffer.from(deployment.env.UNDERSTUDY_MASTER_KEY!, "base64")));
  const store = await openStore(config, join(deployment.cwd, "unused.db"), { current: key });
  try {
    const keys: string[] = [];
    for (const name of names) keys.push((await createApiKey(store.db, systemClock, randomId, (await createTenant(store.db, systemClock, randomId, name)).id)).key);
    return keys;
  } finally {
    await store.db.destroy();
  }
}

function holdServer() {
  const waiting = new Map<string, () => void>();
  const released = new Set<string>();
  const srv = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(request) {
      const name = new URL(request.url).pathname.split("/").pop()!;
      if (!released.has(name)) await new Promise<void>((resolve) => waiting.set(name, resolve));
      return new Response("released");
    },
  });
  return {
    url: `http://127.0.0.1:${srv.port}`,
    release(name: string) {
      released.add(name);
      waiting.get(name)?.();
    },
    waiting: (name: string) => waiting.has(name),
    stop: () => srv.stop(true),
  };
}

async function deploy(key: string, options: UploadOptions, entry = "index.js") {
  const source = await uploadBase64(options);
  return call(server, key, "/v1/deployments/create", { source, entry_point: entry, description: "test upload" });
}

/** Polls deployments/sync until the build ends (on the test's server). */
const built = (key: string, id: string, timeoutMs?: number) => waitForBuild(server, key, id, timeoutMs);

async function runJob(key: string, workflow: string, params: Record<string, unknown> = {}) {
  const created = await call(server, key, "/v1/jobs/create", { workflow, params });
  expect(created.status, JSON.stringify(created.body)).toBe(200);
  return waitForJob(server, key, created.body.job_id, { timeoutMs: 30_000 });
}

const versioned = (version: number): UploadOptions => ({
  workflows: [
    {
      name: "versioned",
      credentials: ["portal_user", "portal_pass"],
      inputSchema: { type: "object", properties: { hold: { type: "string" } } },
      body: `
        if (input.hold) await fetch(input.hold);
        return { version: ${version}, session: ctx.session, credentialNames: Object.keys(input.credentials ?? {}).sort(), credentials: input.credentials, hasPage: typeof ctx.page.goto === "function" };
      `,
    },
  ],
});

describe("deployments: building -> ready -> jobs", () => {
  let firstId: string;

  test("an upload is building at once, then ready with its workflows; sync takes {id} as the CLI sends it", async () => {
    for (const [name, value] of [
      ["portal_user", "alpha-user-4471"],
      ["portal_pass", "alpha-pass-9920"],
      ["unrelated", "alpha-unrelated-3318"],
    ]) {
      expect((await call(server, alpha, "/v1/credentials/upsert", { name, value })).status).toBe(200);
    }
    const created = await deploy(alpha, versioned(1));
    expect(created.status, JSON.stringify(created.body)).toBe(200);
    expect(created.body.status).toBe("building");
    expect(created.body.deployment_id).toMatch(/^[0-9a-f-]{36}$/);
    expect(created.body.workflows).toBeUndefined();
    firstId = created.body.deployment_id;

    const ready = await built(alpha, firstId);
    expect(ready).toMatchObject({ deployment_id: firstId, status: "ready", workflows: ["versioned"], deployment_version: 1, entry_point: "index.js" });
    expect(ready.build_error).toBeUndefined();

    const got = await call(server, alpha, "/v1/deployments/get", { deployment_id: firstId });
    expect(got.body).toEqual(ready);
    const listed = await call(server, alpha, "/v1/deployments/list", {});
    expect(listed.body.deployments.map((d: any) => d.deployment_id)).toEqual([firstId]);

    const workflows = await call(server, alpha, "/v1/workflows/list", {});
    expect(workflows.body.deployed_workflows).toEqual([
      expect.objectContaining({ name: "versioned", deployment_id: firstId, deployment_status: "ready", source: "deployment" }),
    ]);
    const one = await call(server, alpha, "/v1/workflows/get", { workflow: "versioned" });
    expect(one.body.credential_names).toEqual(["portal_user", "portal_pass"]);
    expect(one.body.input_schema).toEqual({ type: "object", properties: { hold: { type: "string" } } });
  });

  test("a job of it runs in a worker with exactly its declared credentials, redacted in the result", async () => {
    const job = await runJob(alpha, "versioned");
    expect(job.status, JSON.stringify(job)).toBe("completed");
    expect(job.deployment_id).toBe(firstId);
    expect(job.deployment_version).toBe("1");
    expect(job.result.version).toBe(1);
    expect(job.result.session).toBe(job.job_id);
    expect(job.result.hasPage).toBe(true);
    expect(job.result.credentialNames).toEqual(["portal_pass", "portal_user"]);
    expect(job.result.credentials).toEqual({ portal_user: "[REDACTED:portal_user]", portal_pass: "[REDACTED:portal_pass]" });
    expect(JSON.stringify(job)).not.toContain("alpha-unrelated-3318");
  });

  test("a second deployment replaces it for new jobs, while a running job finishes on the first", async () => {
    const created = await call(server, alpha, "/v1/jobs/create", { workflow: "versioned", params: { hold: `${holds.url}/hold/first` } });
    expect(created.status).toBe(200);
    const heldJob = created.body.job_id as string;
    const deadline = Date.now() + 20_000;
    while (!holds.waiting("first")) {
      if (Date.now() > deadline) throw new Error("the first job never reached its hold");
      await Bun.sleep(20);
    }

    const second = await deploy(alpha, versioned(2));
    const ready = await built(alpha, second.body.deployment_id);
    expect(ready).toMatchObject({ status: "ready", workflows: ["versioned"], deployment_version: 2 });

    const fresh = await runJob(alpha, "versioned");
    expect(fresh.status).toBe("completed");
    expect(fresh.result.version).toBe(2);
    expect(fresh.deployment_id).toBe(second.body.deployment_id);
    expect(fresh.deployment_version).toBe("2");

    holds.release("first");
    const held = await waitForJob(server, alpha, heldJob, { timeoutMs: 20_000 });
    expect(held.status).toBe("completed");
    expect(held.result.version).toBe(1);
    expect(held.deployment_id).toBe(firstId);
    expect(held.deployment_version).toBe("1");

    const workflows = await call(server, alpha, "/v1/workflows/list", {});
    expect(workflows.body.deployed_workflows).toEqual([expect.objectContaining({ name: "versioned", deployment_id: second.body.deployment_id })]);
  });

  test("tenant B cannot see, run or replace tenant A's deployed workflows", async () => {
    const seen = await call(server, beta, "/v1/workflows/list", {});
    expect(seen.body.deployed_workflows.map((w: any) => w.name)).not.toContain("versioned");
    expect((await call(server, beta, "/v1/workflows/get", { workflow: "versioned" })).status).toBe(404);
    const run = await call(server, beta, "/v1/jobs/create", { workflow: "versioned" });
    expect(run.status).toBe(404);
    const listed = await call(server, beta, "/v1/deployments/list", {});
    expect(listed.body.deployments).toEqual([]);
    const ofAlpha = (await call(server, alpha, "/v1/deployments/list", {})).body.deployments[0].deployment_id;
    expect((await call(server, beta, "/v1/deployments/get", { deployment_id: ofAlpha })).status).toBe(404);
    expect((await call(server, beta, "/v1/deployments/sync", { id: ofAlpha })).status).toBe(404);

    // B deploys its own "versioned": it is B's alone, and A still runs A's.
    const own = await deploy(beta, versioned(99));
    expect((await built(beta, own.body.deployment_id)).status).toBe("ready");
    const betaJob = await runJob(beta, "versioned");
    expect(betaJob.result.version).toBe(99);
    expect(betaJob.result.credentialNames).toEqual([]);
    const alphaJob = await runJob(alpha, "versioned");
    expect(alphaJob.result.version).toBe(2);
  });

  test("after a restart the deployments, their workflows and their jobs are all there", async () => {
    expect(await server.stop()).toBe(0);
    server = await deployment.start();
    const listed = await call(server, alpha, "/v1/deployments/list", {});
    expect(listed.body.deployments.map((d: any) => [d.deployment_version, d.status])).toEqual([
      [2, "ready"],
      [1, "ready"],
    ]);
    const job = await runJob(alpha, "versioned");
    expect(job.status).toBe("completed");
    expect(job.result.version).toBe(2);
  });
});

describe("what a deployment brings", () => {
  test("a bundled libretto/ copy (a file: dependency) is what its code gets for require(\"libretto\"), as it is", async () => {
    const created = await deploy(alpha, {
      workflows: [{ name: "own-libretto", body: "return { libretto: ownLibretto.who, playwright: typeof require('playwright').chromium.launch };" }],
      implementationPrelude: 'const ownLibretto = require("libretto");',
      externals: { libretto: "file:./libretto" },
      files: {
        "libretto/package.json": JSON.stringify({ name: "libretto", version: "0.6.45", main: "index.js" }),
        "libretto/index.js": 'module.exports = { who: "the upload\'s own libretto" };',
      },
    });
    expect((await built(alpha, created.body.deployment_id)).status).toBe("ready");
    const job = await runJob(alpha, "own-libretto");
    expect(job.status, JSON.stringify(job)).toBe("completed");
    expect(job.result).toEqual({ libretto: "the upload's own libretto", playwright: "function" });
  });
});

describe("the upload kept in the database", () => {
  const keeper: UploadOptions = { workflows: [{ name: "kept", body: "return { kept: true };" }] };

  test("a deployment whose folder is not on this server's disk (as on another instance) is unpacked from the database when a job needs it", async () => {
    const created = await deploy(alpha, keeper);
    expect((await built(alpha, created.body.deployment_id)).status).toBe("ready");
    const folder = folderOf(created.body.deployment_id)!;
    rmSync(folder, { recursive: true });
    const job = await runJob(alpha, "kept");
    expect(job.status, JSON.stringify(job)).toBe("completed");
    expect(job.result).toEqual({ kept: true });
    expect(existsSync(join(folder, "index.js"))).toBe(true);
  });

  test("a stored upload that fails its hash is never unpacked: its job fails saying so", async () => {
    const created = await deploy(alpha, { workflows: [{ name: "tampered", body: "return 1;" }] });
    const id = created.body.deployment_id as string;
    expect((await built(alpha, id)).status).toBe("ready");
    const folder = folderOf(id)!;
    rmSync(folder, { recursive: true });
    await rawSql(`UPDATE deployment_archives SET sha256 = '${"0".repeat(64)}' WHERE deployment_id = '${id}'`);
    const job = await runJob(alpha, "tampered");
    expect(job.status).toBe("failed");
    expect(job.error).toBe(`Deployment ${id}'s stored upload failed its integrity check. Deploy again.`);
    expect(existsSync(folder)).toBe(false);
  });

  test("a failed deployment's upload is deleted from the database; a current one's is kept", async () => {
    const failed = await deploy(alpha, { workflows: [], noMetadata: true });
    expect((await built(alpha, failed.body.deployment_id)).status).toBe("failed");
    const current = (await call(server, alpha, "/v1/workflows/get", { workflow: "kept" })).body.deployment_id as string;
    const deadline = Date.now() + 20_000;
    while ((await rawSql(`SELECT deployment_id FROM deployment_archives WHERE deployment_id = '${failed.body.deployment_id}'`)).length > 0) {
      if (Date.now() > deadline) throw new Error("the failed deployment's upload was never pruned");
      await Bun.sleep(100);
    }
    expect(await rawSql(`SELECT deployment_id FROM deployment_archives WHERE deployment_id = '${current}'`)).toEqual([{ deployment_id: current }]);
  });
});

describe("deployments that cannot be built", () => {
  test("an entry point that throws at load fails the build with its error", async () => {
    const created = await deploy(alpha, { workflows: [{ name: "throws-at-load", body: "return 1;" }], entryPrelude: `throw new Error("config.json is missing");` });
    const failed = await built(alpha, created.body.deployment_id);
    expect(failed.status).toBe("failed");
    expect(failed.build_error).toContain("config.json is missing");
    expect(failed.workflows).toBeUndefined();
    expect((await call(server, alpha, "/v1/jobs/create", { workflow: "throws-at-load" })).status).toBe(404);
  });

  test("an external package that is not in the upload fails the build naming it", async () => {
    const created = await deploy(alpha, { workflows: [{ name: "needs-left-pad", body: "return 1;" }], externals: { "left-pad": "^1.3.0" } });
    const failed = await built(alpha, created.body.deployment_id);
    expect(failed.status).toBe("failed");
    expect(failed.build_error).toContain('"left-pad"');
    expect(failed.build_error).toContain("does not install packages");
  });

  test("an entry point that imports a missing package fails the build naming it", async () => {
    const created = await deploy(alpha, { workflows: [{ name: "imports-missing", body: "return 1;" }], entryPrelude: `import "definitely-not-installed-pkg";` });
    const failed = await built(alpha, created.body.deployment_id);
    expect(failed.status).toBe("failed");
    expect(failed.build_error).toContain("definitely-not-installed-pkg");
  });

  test("an entry point that exports no workflow fails the build saying what to export", async () => {
    const created = await deploy(alpha, { workflows: [], noMetadata: true });
    const failed = await built(alpha, created.body.deployment_id);
    expect(failed.status).toBe("failed");
    expect(failed.build_error).toContain("exports no workflows");
  });

  test("an entry_point that is not in the upload is a 400 and nothing is stored", async () => {
    const before = (await call(server, alpha, "/v1/deployments/list", { limit: 100 })).body.deployments.length;
    const refused = await deploy(alpha, versioned(3), "main.js");
    expect(refused.status).toBe(400);
    expect(refused.body.message).toContain('"main.js" is not a file in the upload');
    expect((await call(server, alpha, "/v1/deployments/list", { limit: 100 })).body.deployments.length).toBe(before);
  });

  test("a deployment still building is listed in workflows/list's in_progress_builds", async () => {
    const created = await deploy(alpha, {
      workflows: [{ name: "slow-to-load", body: "return 1;" }],
      entryPrelude: "await new Promise((resolve) => setTimeout(resolve, 1500));",
    });
    const listed = await call(server, alpha, "/v1/workflows/list", {});
    expect(listed.body.in_progress_builds).toEqual([
      { deployment_id: created.body.deployment_id, status: "building", entry_point: "index.js", created_at: expect.any(String) },
    ]);
    expect((await call(server, beta, "/v1/workflows/list", {})).body.in_progress_builds).toEqual([]);
    expect((await built(alpha, created.body.deployment_id)).status).toBe("ready");
    expect((await call(server, alpha, "/v1/workflows/list", {})).body.in_progress_builds).toEqual([]);
  });

  test("nothing of any upload is written outside its deployment's folder", () => {
    const root = join(deployment.cwd, "deployments");
    expect(existsSync(root)).toBe(true);
    // <root>/<tenant id>/<deployment id>/..., nothing else.
    for (const tenant of readdirSync(root)) {
      expect(tenant).toMatch(/^[0-9a-f-]{36}$/);
      for (const id of readdirSync(join(root, tenant))) expect(id).toMatch(/^[0-9a-f-]{36}$/);
    }
    const database = onPostgres ? [] : ["understudy.db", "understudy.db-shm", "understudy.db-wal"];
    expect(readdirSync(deployment.cwd).sort()).toEqual(["deployments", ...database]);
  });
});

describe("hostile uploads", () => {
  /** Every file under `dir`, relative, to compare before and after. */
  const listing = (dir: string) => (existsSync(dir) ? readdirSync(dir, { recursive: true }).map(String).sort() : []);
  const outside = () => join(deployment.cwd, "..");

  async function refused(entries: Parameters<typeof tarBase64>[0], status: number, words: string) {
    // What the upload names, as it could land beside the data directory (the
    // parent is the shared temp directory: other entries there come and go).
    const names = new Set(entries.map((e) => basename(e.header.name)));
    const near = () => readdirSync(outside()).filter((name) => names.has(name)).sort();
    const before = { data: listing(deployment.cwd), parent: near() };
    const response = await call(server, alpha, "/v1/deployments/create", { source: await tarBase64(entries), entry_point: "index.js" });
    expect(response.status, JSON.stringify(response.body)).toBe(status);
    expect(response.body.message).toContain(words);
    // Nothing written: no new deployment folder, no file anywhere near.
    expect(listing(deployment.cwd).filter((f) => !f.startsWith("understudy.db"))).toEqual(before.data.filter((f) => !f.startsWith("understudy.db")));
    expect(near()).toEqual(before.parent);
  }

  const index = { header: { name: "./index.js", type: "file" as const, mode: 0o644 }, content: "export {};" };

  test("a path that climbs out (../x, a/../../x) is a 400", async () => {
    await refused([index, { header: { name: "../escaped.txt", type: "file" }, content: "x" }], 400, "escaped.txt");
    await refused([index, { header: { name: "a/../../escaped.txt", type: "file" }, content: "x" }], 400, "escaped.txt");
  });

  test("an absolute path is a 400", async () => {
    const target = join(outside(), "absolute-escape.txt");
    await refused([index, { header: { name: target, type: "file" }, content: "x" }], 400, "absolute-escape.txt");
    expect(existsSync(target)).toBe(false);
  });

  test("a link out of the tree, and a write through a link, are a 400", async () => {
    await refused([index, { header: { name: "./etc", type: "symlink", linkname: "/etc" } }], 400, "etc");
    await refused([index, { header: { name: "./up", type: "symlink", linkname: "../../.." } }], 400, "up");
    await refused(
      [index, { header: { name: "./inside", type: "symlink", linkname: "." } }, { header: { name: "./inside/through.txt", type: "file" }, content: "x" }],
      400,
      "through.txt",
    );
    await refused([index, { header: { name: "./hard", type: "link", linkname: "/etc/passwd" } }], 400, "hard");
  });

  test("a device file or a FIFO is a 400", async () => {
    await refused([index, { header: { name: "./null", type: "character-device", devmajor: 1, devminor: 3 } }], 400, "null");
    await refused([index, { header: { name: "./pipe", type: "fifo" } }], 400, "pipe");
  });

  test("garbage and an empty archive are a 400", async () => {
    const garbage = await call(server, alpha, "/v1/deployments/create", { source: "definitely not base64!", entry_point: "index.js" });
    expect(garbage.status).toBe(400);
    expect(garbage.body.data.issues[0].path).toEqual(["source"]);
    await refused([], 400, "");
  });

  describe("with small limits", () => {
    beforeAll(async () => {
      expect(await server.stop()).toBe(0);
      server = await deployment.start({ UNDERSTUDY_MAX_DEPLOY_BYTES: "65536", UNDERSTUDY_MAX_DEPLOY_UNPACKED_BYTES: "1048576" });
    });

    test("an upload over UNDERSTUDY_MAX_DEPLOY_BYTES is a 413", async () => {
      const noise = crypto.getRandomValues(new Uint8Array(60_000));
      const source = await tarBase64([index, { header: { name: "./noise.bin", type: "file" }, content: Buffer.concat([Buffer.from(noise), Buffer.from(crypto.getRandomValues(new Uint8Array(20_000)))]) }]);
      const response = await call(server, alpha, "/v1/deployments/create", { source, entry_point: "index.js" });
      expect(response.status).toBe(413);
      expect(response.body.code).toBe("PAYLOAD_TOO_LARGE");
      expect(response.body.message).toContain("The upload was refused");
    });

    test("a body far over the limit is refused before it is read whole", async () => {
      const response = await call(server, alpha, "/v1/deployments/create", { source: "A".repeat(200_000), entry_point: "index.js" });
      expect(response.status).toBe(413);
    });

    test("a gzip bomb is a 413 and nothing is written", async () => {
      // 16 MiB of zeros: ~16 KB gzip'd, 16 times the unpacked limit.
      await refused([index, { header: { name: "./zeros.bin", type: "file" }, content: Buffer.alloc(16 * 1024 * 1024) }], 413, "");
    });
  });
});
