import { afterAll, describe, expect, test } from "bun:test";
import { cpSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { newMasterKey } from "../helpers";
import { call, waitForJob, type ServeDeployment } from "../e2e/serve-child";
import { bwrapAssertionsApply, bwrapUsable } from "../bwrap";
import { WORKER_WORKFLOWS, workerScope } from "./process-tree";

// What a handler sees of the server from inside its worker process, asked
// by the handler itself (test/fixtures/worker-workflows/isolation-probe.ts)
// of a real `serve` child: DESIGN.md "Trust model", issue 8.

const scope = workerScope();
afterAll(() => scope.cleanup());

/** What a worker's environment may hold: built from nothing (src/runner/worker-executor.ts), and PWD, which the runtime adds. */
const WORKER_ENV = ["HOME", "LANG", "LIBRETTO_HOSTED_RUNTIME", "PATH", "PWD", "TMPDIR"];

/** A master key in a file of its own: UNDERSTUDY_MASTER_KEY_FILE. */
function keyFileIn(dir: string): { path: string; text: string } {
  const key = newMasterKey();
  mkdirSync(dir, { recursive: true });
  const path = join(dir, "master.key");
  writeFileSync(path, `${key.text}\n`, { mode: 0o600 });
  return { path, text: key.text };
}

async function probe(deployment: ServeDeployment, params: { dbPath: string; keyFile?: string; withServerPid: boolean; scanProc?: boolean }) {
  const key = await deployment.addTenant("acme");
  const server = await scope.start(deployment);
  const created = await call(server, key, "/v1/jobs/create", {
    workflow: "isolation-probe",
    params: { dbPath: params.dbPath, keyFile: params.keyFile, serverPid: params.withServerPid ? server.child.pid : undefined, scanProc: params.scanProc },
  });
  expect(created.status).toBe(200);
  const job = await waitForJob(server, key, created.body.job_id, { timeoutMs: 20_000 });
  expect(job.error).toBeNull();
  expect(job.status).toBe("completed");
  return { server, job, result: job.result };
}

/** The checks that hold with the process boundary alone: an environment built from nothing. */
function expectCleanEnvironment(result: any, masterKey: string) {
  for (const name of result.envKeys as string[]) expect(WORKER_ENV).toContain(name);
  expect((result.envKeys as string[]).filter((n) => n.startsWith("UNDERSTUDY_"))).toEqual([]);
  expect(typeof result.selfEnviron.ok).toBe("string");
  const environ = (result.selfEnviron.ok as string).split("\0").filter((v) => v !== "");
  expect(environ.length).toBeGreaterThan(0);
  for (const variable of environ) expect(WORKER_ENV).toContain(variable.slice(0, variable.indexOf("=")));
  expect(result.selfEnviron.ok).not.toContain("UNDERSTUDY_");
  // Asserted without echoing: a failure must not print the key either.
  expect(JSON.stringify([result.envKeys, result.env, result.selfEnviron]).includes(masterKey)).toBe(false);
  expect(result.env.HOME).toBe(result.env.TMPDIR);
}

describe("a handler in a worker process (serve's default isolation)", () => {
  test("sees no master key, no UNDERSTUDY_* variable, and (with bubblewrap) neither the database, the key file nor the server's /proc", async () => {
    const masterKey = keyFileIn(scope.dir("understudy-keys-"));
    const deployment = scope.deployment({ UNDERSTUDY_MASTER_KEY: "", UNDERSTUDY_MASTER_KEY_FILE: masterKey.path });
    const { server, result } = await probe(deployment, { dbPath: deployment.dbPath, keyFile: masterKey.path, withServerPid: true });

    expectCleanEnvironment(result, masterKey.text);
    // The server itself has the key file's path in its environment; the worker has neither.
    expect(result.selfEnviron.ok).not.toContain(masterKey.path);

    if (bwrapAssertionsApply("database, key file and server process hidden from the worker")) {
      expect(server.stdout()).toContain("sandboxed with bubblewrap");
      expect(JSON.stringify(result).includes(masterKey.text)).toBe(false);
      expect(result.db).toEqual({ error: "ENOENT" });
      expect(result.keyFile).toEqual({ error: "ENOENT" });
      // Not in its PID namespace: no /proc/<server>/environ, no cmdline.
      expect(result.serverEnviron.error).toEqual(expect.any(String));
      expect(result.serverCmdline.error).toEqual(expect.any(String));
      expect(result.uid).not.toBe(0);
      expect(result.pid).not.toBe(server.child.pid);
    }
  }, 30_000);

  test("with the data directory and the key file inside the workflows directory (UNDERSTUDY_WORKFLOWS_DIR=.), they stay hidden", async () => {
    // The workflows directory is bound into the sandbox: what the server hides inside it must stay hidden.
    const root = scope.dir("understudy-workdir-");
    cpSync(WORKER_WORKFLOWS, root, { recursive: true });
    const masterKey = keyFileIn(join(root, "keys"));
    mkdirSync(join(root, "data"));
    const dbPath = join(root, "data", "understudy.db");
    const deployment = scope.deployment({ UNDERSTUDY_MASTER_KEY: "", UNDERSTUDY_MASTER_KEY_FILE: masterKey.path, UNDERSTUDY_DB: dbPath }, root);
    const { result } = await probe(deployment, { dbPath, keyFile: masterKey.path, withServerPid: true });

    expectCleanEnvironment(result, masterKey.text);
    if (bwrapAssertionsApply("database and key file inside the workflows directory hidden from the worker")) {
      expect(JSON.stringify(result).includes(masterKey.text)).toBe(false);
      // The data directory is an empty directory in the worker's view, and the
      // database file is masked by name as well (/dev/null, on a nodev mount).
      expect(["ENOENT", "EACCES"]).toContain(result.db.error);
      // The key file is /dev/null there: it cannot be opened (EACCES here), or reads as nothing.
      expect(result.keyFile.ok ?? "").toBe("");
    }
  }, 30_000);

  test("with the master key inline in the server's environment, it is in no /proc/*/environ the handler can read: its own, the server's, any", async () => {
    // Issue 9, item 3: workflow code read the key from /proc/self/environ when
    // handlers ran in the server process. The server deletes the variable
    // from process.env, but the process's original environment block keeps it.
    const deployment = scope.deployment();
    const masterKey = deployment.env.UNDERSTUDY_MASTER_KEY!;
    const { server, result } = await probe(deployment, { dbPath: deployment.dbPath, withServerPid: true, scanProc: true });

    expectCleanEnvironment(result, masterKey);
    const environs = result.procEnvirons as Record<string, string>;
    expect(Object.keys(environs).length).toBeGreaterThan(0); // at least its own
    // Without bubblewrap only a non-dumpable server guards its environ, and root reads past that.
    if (bwrapUsable().usable || process.getuid?.() !== 0) {
      expect(JSON.stringify(environs).includes(masterKey)).toBe(false);
      expect(result.serverEnviron.error).toEqual(expect.any(String));
    }
    if (bwrapAssertionsApply("no /proc/<pid>/environ of the server in the worker's view")) {
      expect(server.stdout()).toContain("sandboxed with bubblewrap");
      expect(Object.keys(environs)).not.toContain(String(server.child.pid));
      expect(JSON.stringify(result).includes(masterKey)).toBe(false);
    }
  }, 30_000);

  test("without a sandbox (UNDERSTUDY_WORKER_SANDBOX=none) the process boundary still gives a clean environment", async () => {
    // The master key in the server's environment this time: the worker's must not inherit it.
    const deployment = scope.deployment({ UNDERSTUDY_WORKER_SANDBOX: "none" });
    const { server, result } = await probe(deployment, { dbPath: deployment.dbPath, withServerPid: false });

    expect(server.stdout()).toContain("without a sandbox");
    expectCleanEnvironment(result, deployment.env.UNDERSTUDY_MASTER_KEY!);
    expect(JSON.stringify(result).includes(deployment.env.UNDERSTUDY_MASTER_KEY!)).toBe(false);
    // A process of its own, with a private directory of its own.
    expect(result.pid).not.toBe(server.child.pid);
    expect(result.env.TMPDIR).toMatch(/understudy-workers-[^/]+\/w-[^/]+$/);
    // What the boundary alone does not give: files the server's user can read stay readable.
    expect(result.db).toEqual({ ok: "opened" });
  }, 30_000);
});
