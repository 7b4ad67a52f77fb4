/**
 * Builds the two release artifacts from src/main.ts:
 *
 * - `understudy`: a standalone executable (`bun build --compile`). It runs
 *   with no node_modules beside it; the store uses bun:sqlite, so
 *   better-sqlite3 stays external and is never loaded.
 * - `understudy.mjs`: one ESM file for Node (20+). It loads better-sqlite3
 *   (a native addon, so it cannot be bundled) and playwright-core from
 *   node_modules; bun:sqlite stays external and is never loaded under Node.
 *   Everything else, including @hono/node-server, is bundled in.
 *
 * `npm run build` writes both to dist/; tests and the benchmark import
 * `buildAll` to build into a directory of their own.
 */
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join, relative, resolve } from "node:path";

export const ROOT = resolve(import.meta.dir, "..");
export const ENTRY = join(ROOT, "src", "main.ts");
export const BINARY_NAME = "understudy";
export const NODE_BUNDLE_NAME = "understudy.mjs";

export interface Artifact {
  path: string;
  bytes: number;
}

export interface BuildResult {
  commit: string;
  binary?: Artifact;
  nodeBundle?: Artifact;
}

export interface BuildOptions {
  /** Which artifacts to build (default both). */
  targets?: readonly ("binary" | "node")[];
  /** The commit baked into `understudy version` (default: the checkout's short sha, else "unknown"). */
  commit?: string;
}

/** The short sha of HEAD, or "unknown" outside a git checkout (a Docker build context, a tarball). */
export function gitCommit(cwd: string = ROOT): string {
  try {
    const result = Bun.spawnSync(["git", "rev-parse", "--short", "HEAD"], { cwd, stdout: "pipe", stderr: "ignore" });
    const sha = result.stdout.toString().trim();
    return result.exitCode === 0 && /^[0-9a-f]{4,40}$/.test(sha) ? sha : "unknown";
  } catch {
    return "unknown"; // git itself is missing
  }
}

function defines(commit: string): Record<string, string> {
  return { UNDERSTUDY_COMMIT: JSON.stringify(commit) };
}

function failure(what: string, logs: readonly unknown[]): Error {
  return new Error(`${what} failed:\n${logs.map((l) => `  ${String(l)}`).join("\n")}`);
}

async function buildBinary(outFile: string, commit: string): Promise<Artifact> {
  const result = await Bun.build({
    entrypoints: [ENTRY],
    target: "bun",
    format: "esm",
    // Precompiled bytecode: measured here, start-up to the first /healthz
    // answer drops from ~135 ms to ~80 ms, for ~4 MB more binary and the
    // same RSS.
    bytecode: true,
    // Under Bun the store opens bun:sqlite; better-sqlite3 is only reached on
    // the Node path, so leaving it external keeps its native addon out.
    external: ["better-sqlite3"],
    define: defines(commit),
    compile: {
      outfile: outFile,
      // The server's configuration is its environment, read once (config.ts);
      // a .env or bunfig.toml that happens to sit in the working directory
      // must not change it silently.
      autoloadDotenv: false,
      autoloadBunfig: false,
    },
    throw: false,
  });
  if (!result.success) throw failure("bun build --compile", result.logs);
  return { path: outFile, bytes: statSync(outFile).size };
}

async function buildNodeBundle(outFile: string, commit: string): Promise<Artifact> {
  const result = await Bun.build({
    entrypoints: [ENTRY],
    target: "node",
    format: "esm",
    // better-sqlite3 is a native addon, loaded from node_modules at run time;
    // bun:sqlite only exists under Bun and is never imported under Node.
    // playwright-core reads its own files at run time; since this bundle
    // needs node_modules anyway, it loads from there too (bundled, it also
    // made the file 7.7 MiB instead of under 1 MiB).
    external: ["better-sqlite3", "bun:sqlite", "playwright-core"],
    define: defines(commit),
    throw: false,
  });
  if (!result.success) throw failure("bun build --target=node", result.logs);
  const [output] = result.outputs;
  if (!output || result.outputs.length !== 1) throw new Error(`bun build --target=node gave ${result.outputs.length} outputs, expected 1`);
  // src/main.ts starts with `#!/usr/bin/env bun`, which Bun keeps and marks
  // with `// @bun`; this file is for Node.
  const code = (await output.text()).replace(/^#![^\n]*\n(?:\/\/ @bun[^\n]*\n)?/, "");
  writeFileSync(outFile, `#!/usr/bin/env node\n${code}`);
  chmodSync(outFile, 0o755);
  return { path: outFile, bytes: statSync(outFile).size };
}

/** Builds the artifacts into outDir (created if missing) and returns their paths and sizes. */
export async function buildAll(outDir: string = join(ROOT, "dist"), options: BuildOptions = {}): Promise<BuildResult> {
  const targets = options.targets ?? ["binary", "node"];
  const commit = options.commit ?? gitCommit();
  const dir = resolve(outDir);
  mkdirSync(dir, { recursive: true });
  const result: BuildResult = { commit };
  if (targets.includes("node")) result.nodeBundle = await buildNodeBundle(join(dir, NODE_BUNDLE_NAME), commit);
  if (targets.includes("binary")) result.binary = await buildBinary(join(dir, BINARY_NAME), commit);
  return result;
}

export function formatBytes(bytes: number): string {
  if (bytes >= 1024 * 1024) return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
  if (bytes >= 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${bytes} B`;
}

if (import.meta.main) {
  const started = performance.now();
  const built = await buildAll();
  const version = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).version as string;
  console.log(`understudy ${version} (${built.commit}) built in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  for (const artifact of [built.binary, built.nodeBundle]) {
    if (artifact) console.log(`  ${relative(process.cwd(), artifact.path).padEnd(24)} ${formatBytes(artifact.bytes).padStart(10)}`);
  }
}
