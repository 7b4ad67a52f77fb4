/**
 * The release artifacts, end to end: both are built into a temp directory,
 * then each is run the way an operator would run it, against a fresh
 * database and master key, over real HTTP.
 *
 * - the compiled binary, copied alone into an empty directory (no
 *   node_modules anywhere above it), with a minimal environment;
 * - `node understudy.mjs`, beside a node_modules link (better-sqlite3 is
 *   loaded from there).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Subprocess } from "bun";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildAll, ROOT, type BuildResult } from "../scripts/build";
import { describeWithChromium } from "./chromium";
import { uploadBase64 } from "./deployments/upload";
import { call, waitForBuild, waitForJob } from "./e2e/serve-child";

const BUILD_TIMEOUT_MS = 120_000;
const COMMAND_TIMEOUT_MS = 15_000;
const HEALTHY_TIMEOUT_MS = 10_000;
const EXIT_TIMEOUT_MS = 10_000;

let work = "";
let built: BuildResult;
const children = new Set<Subprocess>();

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "understudy-binary-test-"));
  built = await buildAll(join(work, "out"));
}, BUILD_TIMEOUT_MS);

afterAll(() => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  children.clear();
  if (work) rmSync(work, { recursive: true, force: true });
});

interface Runtime {
  name: string;
  /** Prepares a directory of its own to run from; returns the command prefix and that directory. */
  prepare(): { command: string[]; cwd: string };
}

const nodePath = Bun.which("node");

const runtimes: Runtime[] = [
  {
    name: "compiled binary, alone in an empty directory",
    prepare() {
      const dir = join(work, "binary-run");
      mkdirSync(dir);
      copyFileSync(built.binary!.path, join(dir, "understudy"));
      return { command: [join(dir, "understudy")], cwd: dir };
    },
  },
  {
    name: "node understudy.mjs",
    prepare() {
      if (!nodePath) throw new Error("node is not on PATH; the Node bundle cannot be tested");
      const dir = join(work, "node-run");
      mkdirSync(dir);
      copyFileSync(built.nodeBundle!.path, join(dir, "understudy.mjs"));
      symlinkSync(join(ROOT, "node_modules"), join(dir, "node_modules"), "dir");
      return { command: [nodePath, join(dir, "understudy.mjs")], cwd: dir };
    },
  },
];

/** A port that was free a moment ago (serve takes a fixed port, not 0). */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      const port = typeof address === "object" && address ? address.port : 0;
      probe.close(() => (port ? resolve(port) : reject(new Error("no port assigned"))));
    });
  });
}

/** Only what the process needs: nothing from this test run (NODE_PATH, BUN_*, a master key) leaks in. */
function cleanEnv(cwd: string, extra: Record<string, string> = {}): Record<string, string> {
  return { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: cwd, ...extra };
}

async function runCommand(command: string[], cwd: string, env: Record<string, string>) {
  const child = Bun.spawn(command, { cwd, env, stdout: "pipe", stderr: "pipe", timeout: COMMAND_TIMEOUT_MS, killSignal: "SIGKILL" });
  children.add(child);
  const [stdout, stderr, exitCode] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  children.delete(child);
  return { stdout, stderr, exitCode };
}

async function waitForHealthy(url: string, server: Subprocess, stderr: () => string): Promise<void> {
  const deadline = Date.now() + HEALTHY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (server.exitCode !== null || server.signalCode !== null) {
      throw new Error(`serve exited (${server.exitCode ?? server.signalCode}) before it was healthy:\n${stderr()}`);
    }
    try {
      const response = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(500) });
      if (response.status === 200) return;
    } catch {
      // not listening yet
    }
    await Bun.sleep(25);
  }
  throw new Error(`serve was not healthy within ${HEALTHY_TIMEOUT_MS} ms:\n${stderr()}`);
}

async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

for (const runtime of runtimes) {
  describe(runtime.name, () => {
    let command: string[] = [];
    let cwd = "";

    beforeAll(() => {
      ({ command, cwd } = runtime.prepare());
    });

    test("version names the built commit", async () => {
      const result = await runCommand([...command, "version"], cwd, cleanEnv(cwd));
      expect(result.exitCode).toBe(0);
      expect(result.stdout.trim()).toMatch(/^understudy \d+\.\d+\.\d+\S* \(\S+\)$/);
      expect(result.stdout).toContain(`(${built.commit})`);
    });

    test("admin commands, serve, upsert and get over HTTP, SIGTERM exits 0", async () => {
      if (runtime.name.startsWith("compiled")) {
        // Nothing beside the binary: it cannot be leaning on node_modules.
        expect(readdirSync(cwd)).toEqual(["understudy"]);
      }
      const dbPath = join(cwd, "data", "understudy.db");
      const env = cleanEnv(cwd);

      const keygen = await runCommand([...command, "keygen"], cwd, env);
      expect(keygen.exitCode).toBe(0);
      const masterKey = keygen.stdout.trim();
      expect(Buffer.from(masterKey, "base64")).toHaveLength(32);

      const tenant = await runCommand([...command, "tenants", "create", "acme", "--db", dbPath], cwd, env);
      expect(tenant.exitCode).toBe(0);
      expect(tenant.stdout).toContain("acme");

      const key = await runCommand([...command, "keys", "create", "--tenant", "acme", "--db", dbPath], cwd, env);
      expect(key.exitCode).toBe(0);
      const apiKey = key.stdout.trim();
      expect(apiKey).toMatch(/^usk_\S+$/);

      const port = await freePort();
      const url = `http://127.0.0.1:${port}`;
      const server = Bun.spawn([...command, "serve"], {
        cwd,
        env: cleanEnv(cwd, {
          UNDERSTUDY_MASTER_KEY: masterKey,
          UNDERSTUDY_DB: dbPath,
          UNDERSTUDY_LISTEN: `127.0.0.1:${port}`,
          UNDERSTUDY_RATE_LIMIT_PER_SECOND: "0",
        }),
        stdout: "pipe",
        stderr: "pipe",
      });
      children.add(server);
      // Drain both pipes from the start so the server never blocks on a full pipe.
      let stderrSoFar = "";
      const stdoutText = new Response(server.stdout).text();
      const stderrText = (async () => {
        const decoder = new TextDecoder();
        for await (const chunk of server.stderr) stderrSoFar += decoder.decode(chunk, { stream: true });
        return stderrSoFar;
      })();

      try {
        await waitForHealthy(url, server, () => stderrSoFar);

        const value = `s3cret-${crypto.randomUUID()}`;
        const post = (path: string, body: unknown) =>
          fetch(`${url}${path}`, {
            method: "POST",
            headers: { "content-type": "application/json", "x-api-key": apiKey },
            body: JSON.stringify(body),
            signal: AbortSignal.timeout(5000),
          });

        const upserted = await post("/v1/credentials/upsert", { name: "portal_password", value });
        expect(upserted.status).toBe(200);
        const upsertBody = (await upserted.json()) as { success: boolean; credential_id: string };
        expect(upsertBody.success).toBe(true);

        const got = await post("/v1/credentials/get", { name: "portal_password" });
        expect(got.status).toBe(200);
        expect(await got.json()).toEqual({ id: upsertBody.credential_id, value });

        // The dashboard and its assets are inside the build: sign in, see the credential (never its value).
        const signIn = await fetch(`${url}/ui/sign-in`, { method: "POST", body: new URLSearchParams({ api_key: apiKey }), redirect: "manual" });
        expect(signIn.status).toBe(303);
        const cookie = signIn.headers.getSetCookie().find((c) => c.startsWith("understudy_session="))!.split(";")[0]!;
        const page = await fetch(`${url}/ui/credentials`, { headers: { cookie } });
        const html = await page.text();
        expect(page.status).toBe(200);
        expect(html).toContain("portal_password");
        expect(html).not.toContain(value);
        const script = /<script src="(\/ui\/assets\/app\.[0-9a-f]{12}\.js)"/.exec(html)![1]!;
        const asset = await fetch(`${url}${script}`);
        expect(asset.status).toBe(200);
        expect(await asset.text()).toContain("EventSource");

        server.kill("SIGTERM");
        const exitCode = await withTimeout(server.exited, EXIT_TIMEOUT_MS, "shutdown after SIGTERM");
        const [stdout, stderr] = await withTimeout(Promise.all([stdoutText, stderrText]), EXIT_TIMEOUT_MS, "reading the output");
        expect({ exitCode, stderr }).toEqual({ exitCode: 0, stderr: expect.stringContaining("shutting down") });

        // One JSON line per request; the lines name the request, never its secrets.
        const lines = stdout.split("\n").filter((l) => l.length > 0);
        const requests = lines.map((l) => JSON.parse(l) as { msg: string; path: string; status: number });
        expect(requests.filter((r) => r.msg === "request").map((r) => [r.path, r.status])).toEqual([
          ["/v1/credentials/upsert", 200],
          ["/v1/credentials/get", 200],
          ["/ui/sign-in", 303],
          ["/ui/credentials", 200],
          [script, 200],
        ]);
        for (const secret of [value, apiKey, masterKey]) {
          expect(stdout).not.toContain(secret);
          expect(stderr).not.toContain(secret);
        }
      } finally {
        if (server.exitCode === null && server.signalCode === null) server.kill("SIGKILL");
        children.delete(server);
      }
      expect(existsSync(dbPath)).toBe(true);
    }, 45_000);
  });
}

/**
 * The compiled binary copied alone into `dir` with these workflow files, a
 * tenant "acme" and its key made with the binary's own commands, then
 * `serve` on a free port until healthy. Stop it with `stop()`.
 */
async function serveBinaryAlone(dir: string, workflows: Record<string, string>, extraEnv: Record<string, string> = {}) {
  mkdirSync(join(dir, "workflows"), { recursive: true });
  copyFileSync(built.binary!.path, join(dir, "understudy"));
  for (const [name, source] of Object.entries(workflows)) await Bun.write(join(dir, "workflows", name), source);
  const command = [join(dir, "understudy")];
  const env = cleanEnv(dir);
  const dbPath = join(dir, "u.db");
  const masterKey = (await runCommand([...command, "keygen"], dir, env)).stdout.trim();
  expect((await runCommand([...command, "tenants", "create", "acme", "--db", dbPath], dir, env)).exitCode).toBe(0);
  const apiKey = (await runCommand([...command, "keys", "create", "--tenant", "acme", "--db", dbPath], dir, env)).stdout.trim();

  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const server = Bun.spawn([...command, "serve"], {
    cwd: dir,
    env: cleanEnv(dir, { UNDERSTUDY_MASTER_KEY: masterKey, UNDERSTUDY_DB: dbPath, UNDERSTUDY_LISTEN: `127.0.0.1:${port}`, ...extraEnv }),
    stdout: "ignore",
    stderr: "pipe",
  });
  children.add(server);
  let stderrSoFar = "";
  void (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of server.stderr) stderrSoFar += decoder.decode(chunk, { stream: true });
  })();
  const stop = async () => {
    server.kill("SIGTERM");
    await withTimeout(server.exited, EXIT_TIMEOUT_MS, "shutdown after SIGTERM");
    children.delete(server);
  };
  try {
    await waitForHealthy(url, server, () => stderrSoFar);
  } catch (error) {
    await stop();
    throw error;
  }
  return { url, apiKey, command, env, stop };
}

describe("compiled binary: workflow files written for libretto, with no node_modules anywhere", () => {
  const WORKFLOW = `import { workflow } from "libretto";
import { z } from "zod";

export default workflow("binary-echo", {
  credentials: ["Portal_Password"],
  input: z.object({ who: z.string() }),
  async handler(ctx, input) {
    ctx.log.info("greeting", input.who);
    const value = input.credentials?.portal_password ?? "";
    return { who: input.who, length: value.length, reversed: [...value].reverse().join("") };
  },
});
`;

  test("serve runs a job of a workflow file with its declared credential; run reads LIBRETTO_CLOUD_* from .env", async () => {
    const dir = join(work, "binary-workflows");
    const { url, apiKey, command, env, stop } = await serveBinaryAlone(dir, { "echo.ts": WORKFLOW });
    try {
      const post = async (path: string, body: unknown) => {
        const response = await fetch(`${url}${path}`, {
          method: "POST",
          headers: { "content-type": "application/json", "x-api-key": apiKey },
          body: JSON.stringify({ json: body }),
          signal: AbortSignal.timeout(5000),
        });
        return { status: response.status, body: ((await response.json()) as { json: any }).json };
      };
      expect((await post("/v1/workflows/get", { workflow: "binary-echo" })).body.credential_names).toEqual(["portal_password"]);
      expect((await post("/v1/credentials/create", { name: "portal_password", value: "binary-s3cret" })).status).toBe(200);
      const created = await post("/v1/jobs/create", { workflow: "binary-echo", params: { who: "ops" } });
      expect(created.status).toBe(200);
      let job: any;
      for (let i = 0; i < 200; i++) {
        job = (await post("/v1/jobs/get", { id: created.body.job_id })).body;
        if (["completed", "failed", "cancelled"].includes(job.status)) break;
        await Bun.sleep(25);
      }
      expect(job.status).toBe("completed");
      expect(job.result).toEqual({ who: "ops", length: "binary-s3cret".length, reversed: "terc3s-yranib" });
    } finally {
      await stop();
    }

    await Bun.write(join(dir, ".env"), "LIBRETTO_CLOUD_PORTAL_PASSWORD=from-dotenv-1234\n");
    const run = await runCommand([...command, "run", join(dir, "workflows", "echo.ts"), "--params", '{"who":"local"}'], dir, env);
    expect(run.exitCode).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual({ who: "local", length: 16, reversed: "4321-vnetod-morf" });
    expect(run.stderr).toContain("greeting local");
  }, 60_000);
});

// playwright-core is bundled into the binary, with its package.json and
// browsers.json inlined (scripts/build.ts): the binary, alone, must find it
// both for the server's own browser (ctx.page) and for deployed code that
// requires "playwright" in its worker process.
describeWithChromium("compiled binary, alone in a directory: the playwright-core it carries", (chromium) => {
  const WORKFLOW = `import { workflow } from "libretto";

export default workflow("binary-page", {
  startUrl: "data:text/html,<title>binary page</title><h1 id=h>from the binary</h1>",
  async handler(ctx) {
    return { title: await ctx.page.title(), h1: await ctx.page.textContent("#h") };
  },
});
`;

  test("a browser job of a workflow file, and a deployed workflow that requires playwright, both complete", async () => {
    const { url, apiKey, stop } = await serveBinaryAlone(join(work, "binary-browser"), { "page.ts": WORKFLOW }, { UNDERSTUDY_CHROMIUM_PATH: chromium });
    const server = { url };
    const runJob = async (workflow: string) => {
      const created = await call(server, apiKey, "/v1/jobs/create", { workflow, params: {} });
      expect(created.status, JSON.stringify(created.body)).toBe(200);
      const job = await waitForJob(server, apiKey, created.body.job_id, { timeoutMs: 60_000 });
      return { status: job.status, error: job.error, result: job.result };
    };
    try {
      expect(await runJob("binary-page")).toEqual({ status: "completed", error: null, result: { title: "binary page", h1: "from the binary" } });

      const source = await uploadBase64({
        workflows: [{ name: "binary-deployed", body: "const pw = require('playwright'); return { launch: typeof pw.chromium.launch, devices: Object.keys(pw.devices).length > 10 };" }],
      });
      const deployed = await call(server, apiKey, "/v1/deployments/create", { source, entry_point: "index.js", description: "binary test" });
      expect(deployed.status, JSON.stringify(deployed.body)).toBe(200);
      expect((await waitForBuild(server, apiKey, deployed.body.deployment_id, 60_000)).status).toBe("ready");
      expect(await runJob("binary-deployed")).toEqual({ status: "completed", error: null, result: { launch: "function", devices: true } });
    } finally {
      await stop();
    }
  }, 150_000);
});
