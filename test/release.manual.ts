/**
 * The release build, end to end. Not part of `npm test` (the name does not
 * match `*.test.ts`): it cross-compiles four ~110-130 MiB executables, which
 * takes ~30 s and, the first time, downloads Bun's runtime for each target
 * from the npm registry (`@oven/bun-<os>-<arch>`). Run it by hand:
 *
 *   npx bun test ./test/release.manual.ts
 *
 * It builds into a temp directory (or checks an existing one: set
 * UNDERSTUDY_RELEASE_DIR=dist/release to test what `npm run build:release`
 * made), then checks each file's format, that SHA256SUMS verifies with
 * `sha256sum -c`, and runs the executable for this machine (linux-x64) the
 * way an operator would: alone in an empty directory, keygen, tenants create,
 * keys create, serve, a credential upsert/get over HTTP, SIGTERM exits 0, and
 * `version` names the commit.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Subprocess } from "bun";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { buildRelease, CHECKSUMS_NAME, gitCommit, packageVersion, RELEASE_TARGETS, type ReleasePlatform } from "../scripts/build";

const FORMATS: Record<ReleasePlatform, RegExp> = {
  "linux-x64": /ELF 64-bit LSB .*x86-64/,
  "linux-arm64": /ELF 64-bit LSB .*ARM aarch64/,
  "darwin-x64": /Mach-O 64-bit x86_64 executable/,
  "darwin-arm64": /Mach-O 64-bit arm64 executable/,
};
const PLATFORMS = Object.keys(RELEASE_TARGETS) as ReleasePlatform[];

let work = "";
let releaseDir = "";
let commit = "";
const children = new Set<Subprocess>();

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "understudy-release-test-"));
  if (process.env.UNDERSTUDY_RELEASE_DIR) {
    releaseDir = resolve(process.env.UNDERSTUDY_RELEASE_DIR);
    commit = gitCommit();
  } else {
    releaseDir = join(work, "release");
    commit = (await buildRelease(releaseDir)).commit;
  }
}, 600_000);

afterAll(() => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  if (work) rmSync(work, { recursive: true, force: true });
});

function sh(command: string[], cwd: string, env: Record<string, string> = { PATH: process.env.PATH ?? "/usr/bin:/bin" }) {
  const result = Bun.spawnSync(command, { cwd, env, stdout: "pipe", stderr: "pipe", timeout: 20_000 });
  return { exitCode: result.exitCode, stdout: result.stdout.toString(), stderr: result.stderr.toString() };
}

function freePort(): number {
  const probe = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response() });
  const port = probe.port!;
  probe.stop(true);
  return port;
}

describe("release files", () => {
  test("four executables, one per platform, in the right format", () => {
    expect(readdirSync(releaseDir).sort()).toEqual([CHECKSUMS_NAME, ...PLATFORMS.map((p) => `understudy-${p}`)].sort());
    for (const platform of PLATFORMS) {
      const described = sh(["file", "-b", `understudy-${platform}`], releaseDir).stdout;
      expect({ platform, described }).toEqual({ platform, described: expect.stringMatching(FORMATS[platform]) });
    }
  });

  test("SHA256SUMS lists every executable and verifies with sha256sum -c", () => {
    const lines = readFileSync(join(releaseDir, CHECKSUMS_NAME), "utf8").trimEnd().split("\n");
    expect(lines.map((l) => l.replace(/^[0-9a-f]{64} {2}/, ""))).toEqual(PLATFORMS.map((p) => `understudy-${p}`));
    const check = sh(["sha256sum", "-c", CHECKSUMS_NAME], releaseDir);
    expect(check.exitCode).toBe(0);
    expect(check.stdout.trim().split("\n")).toEqual(PLATFORMS.map((p) => `understudy-${p}: OK`));
  });
});

describe.skipIf(process.platform !== "linux" || process.arch !== "x64")("understudy-linux-x64, alone in an empty directory", () => {
  test("version, keygen, tenants create, keys create, serve, upsert/get, SIGTERM exits 0", async () => {
    const dir = join(work, "run");
    mkdirSync(dir);
    copyFileSync(join(releaseDir, "understudy-linux-x64"), join(dir, "understudy"));
    const exe = join(dir, "understudy");
    const env = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: dir };
    const dbPath = join(dir, "data", "understudy.db");

    const version = sh([exe, "version"], dir, env);
    expect(version.exitCode).toBe(0);
    expect(version.stdout.trim()).toBe(`understudy ${packageVersion()} (${commit})`);

    const masterKey = sh([exe, "keygen"], dir, env).stdout.trim();
    expect(Buffer.from(masterKey, "base64")).toHaveLength(32);
    expect(sh([exe, "tenants", "create", "acme", "--db", dbPath], dir, env).exitCode).toBe(0);
    const apiKey = sh([exe, "keys", "create", "--tenant", "acme", "--db", dbPath], dir, env).stdout.trim();
    expect(apiKey).toMatch(/^usk_\S+$/);

    const port = freePort();
    const url = `http://127.0.0.1:${port}`;
    const server = Bun.spawn([exe, "serve"], {
      cwd: dir,
      env: { ...env, UNDERSTUDY_MASTER_KEY: masterKey, UNDERSTUDY_DB: dbPath, UNDERSTUDY_LISTEN: `127.0.0.1:${port}` },
      stdout: "ignore",
      stderr: "pipe",
    });
    children.add(server);
    let stderr = "";
    const drained = (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of server.stderr) stderr += decoder.decode(chunk, { stream: true });
    })();
    try {
      const deadline = Date.now() + 10_000;
      for (;;) {
        if (server.exitCode !== null) throw new Error(`serve exited ${server.exitCode}: ${stderr}`);
        const ok = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(500) }).then((r) => r.status === 200, () => false);
        if (ok) break;
        if (Date.now() > deadline) throw new Error(`serve not healthy in 10 s: ${stderr}`);
        await Bun.sleep(25);
      }
      const post = (path: string, body: unknown) =>
        fetch(`${url}${path}`, {
          method: "POST",
          headers: { "content-type": "application/json", "x-api-key": apiKey },
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(5000),
        });
      const value = `s3cret-${crypto.randomUUID()}`;
      const upserted = await post("/v1/credentials/upsert", { name: "portal_password", value });
      expect(upserted.status).toBe(200);
      const { credential_id } = (await upserted.json()) as { credential_id: string };
      const got = await post("/v1/credentials/get", { name: "portal_password" });
      expect(got.status).toBe(200);
      expect(await got.json()).toEqual({ id: credential_id, value });

      server.kill("SIGTERM");
      const timer = setTimeout(() => server.kill("SIGKILL"), 10_000);
      const exitCode = await server.exited;
      clearTimeout(timer);
      await drained;
      expect({ exitCode, stderr }).toEqual({ exitCode: 0, stderr: expect.stringContaining("shutting down") });
    } finally {
      if (server.exitCode === null && server.signalCode === null) server.kill("SIGKILL");
      children.delete(server);
    }
    expect(existsSync(dbPath)).toBe(true);
  }, 60_000);
});
