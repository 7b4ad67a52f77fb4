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
 *
 * `npm run build:release` (`--release`) cross-compiles the executable for
 * linux-x64, linux-arm64, darwin-x64 and darwin-arm64 into dist/release/
 * (`understudy-<os>-<arch>`) with a SHA256SUMS file; see `buildRelease`.
 */
import { createHash } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { basename, join, relative, resolve } from "node:path";

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

/**
 * The short sha of HEAD: from git, else read from the .git directory itself
 * (the Docker build has no git, only .git's HEAD and refs: see Dockerfile),
 * else "unknown" (a tarball, or a git worktree's .git file in a Docker build).
 */
export function gitCommit(cwd: string = ROOT): string {
  try {
    const result = Bun.spawnSync(["git", "rev-parse", "--short", "HEAD"], { cwd, stdout: "pipe", stderr: "ignore" });
    const sha = result.stdout.toString().trim();
    if (result.exitCode === 0 && /^[0-9a-f]{4,40}$/.test(sha)) return sha;
  } catch {
    // git itself is missing
  }
  return commitFromGitDir(join(cwd, ".git"))?.slice(0, 7) ?? "unknown";
}

/** HEAD's full sha read from a .git directory's files (HEAD, refs/, packed-refs), without git. */
export function commitFromGitDir(gitDir: string): string | undefined {
  const read = (path: string) => {
    try {
      return readFileSync(join(gitDir, path), "utf8").trim();
    } catch {
      return undefined;
    }
  };
  const head = read("HEAD");
  if (head === undefined) return undefined;
  const ref = /^ref: (refs\/\S+)$/.exec(head)?.[1];
  const sha = ref ? (read(ref) ?? packedRef(read("packed-refs"), ref)) : head;
  return sha && /^[0-9a-f]{40}$/.test(sha) ? sha : undefined;
}

function packedRef(packed: string | undefined, ref: string): string | undefined {
  for (const line of packed?.split("\n") ?? []) {
    const [sha, name] = line.trim().split(" ");
    if (name === ref) return sha;
  }
  return undefined;
}

function defines(commit: string): Record<string, string> {
  return { UNDERSTUDY_COMMIT: JSON.stringify(commit) };
}

function failure(what: string, logs: readonly unknown[]): Error {
  return new Error(`${what} failed:\n${logs.map((l) => `  ${String(l)}`).join("\n")}`);
}

/**
 * playwright-core loads its package.json and browsers.json with a computed
 * require() at run time, from the folder it was built in: a compiled binary
 * moved anywhere else could not start a browser ("Cannot find module
 * .../playwright-core/package.json"). This inlines both files at build time.
 */
const inlinePlaywrightJson: import("bun").BunPlugin = {
  name: "inline-playwright-json",
  setup(build) {
    build.onLoad({ filter: /playwright-core[\\/]lib[\\/].*\.js$/ }, async (args) => {
      const root = join(args.path, "..", "..");
      let contents = await Bun.file(args.path).text();
      contents = contents.replace(
        /require\((import_path\d*)\.default\.join\(packageRoot, "(package|browsers)\.json"\)\)/g,
        (_match, _path, name: string) => `(${readFileSync(join(root, `${name}.json`), "utf8")})`,
      );
      return { contents, loader: "js" };
    });
  },
};

/**
 * Builds one standalone executable. With a `target` it cross-compiles: Bun
 * then needs its own runtime for that platform, which it downloads from the
 * npm registry (`@oven/bun-<os>-<arch>`, honouring the configured registry)
 * into ~/.bun/install/cache, or takes from `executablePath` when given.
 */
async function buildBinary(
  outFile: string,
  commit: string,
  cross: { target?: Bun.Build.CompileTarget; executablePath?: string } = {},
): Promise<Artifact> {
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
    // pg-cloudflare is pg's optional dependency for Cloudflare Workers, required
    // only there: the Docker build installs no optional packages, and a
    // bundler that cannot resolve it fails the whole build.
    external: ["better-sqlite3", "pg-cloudflare"],
    define: defines(commit),
    plugins: [inlinePlaywrightJson],
    compile: {
      outfile: outFile,
      ...(cross.target ? { target: cross.target } : {}),
      ...(cross.executablePath ? { executablePath: cross.executablePath } : {}),
      // The server's configuration is its environment, read once (config.ts);
      // a .env or bunfig.toml that happens to sit in the working directory
      // must not change it silently.
      autoloadDotenv: false,
      autoloadBunfig: false,
    },
    throw: false,
  });
  if (!result.success) throw failure(`bun build --compile${cross.target ? ` --target=${cross.target}` : ""}`, result.logs);
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
    external: ["better-sqlite3", "bun:sqlite", "playwright-core", "pg-cloudflare"],
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

/** The platforms `npm run build:release` cross-compiles for: release file name suffix -> Bun's compile target. */
export const RELEASE_TARGETS = {
  "linux-x64": "bun-linux-x64",
  "linux-arm64": "bun-linux-arm64",
  "darwin-x64": "bun-darwin-x64",
  "darwin-arm64": "bun-darwin-arm64",
} as const satisfies Record<string, Bun.Build.CompileTarget>;
export type ReleasePlatform = keyof typeof RELEASE_TARGETS;
export const RELEASE_DIR = join(ROOT, "dist", "release");
export const CHECKSUMS_NAME = "SHA256SUMS";

export interface ReleaseOptions {
  /** Which platforms (default all four). */
  platforms?: readonly ReleasePlatform[];
  /** The commit baked into `understudy version` (default: gitCommit()). */
  commit?: string;
  /**
   * A directory holding Bun runtimes named `bun-<os>-<arch>` (e.g.
   * `bun-darwin-arm64`, the `bin/bun` of the `@oven/bun-darwin-aarch64` npm
   * package); a platform found there is compiled against that file instead of
   * one Bun downloads. Default: $UNDERSTUDY_BUN_RUNTIMES, else none.
   */
  runtimesDir?: string;
}

export interface ReleaseResult {
  version: string;
  commit: string;
  binaries: (Artifact & { platform: ReleasePlatform; sha256: string })[];
  checksums: string;
}

export function packageVersion(): string {
  return JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).version as string;
}

function sha256(path: string): string {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}

/**
 * Cross-compiles `understudy-<os>-<arch>` for each release platform into
 * outDir and writes SHA256SUMS beside them (`sha256sum -c SHA256SUMS` checks it).
 */
export async function buildRelease(outDir: string = RELEASE_DIR, options: ReleaseOptions = {}): Promise<ReleaseResult> {
  const platforms = options.platforms ?? (Object.keys(RELEASE_TARGETS) as ReleasePlatform[]);
  const commit = options.commit ?? gitCommit();
  const runtimesDir = options.runtimesDir ?? process.env.UNDERSTUDY_BUN_RUNTIMES;
  const dir = resolve(outDir);
  mkdirSync(dir, { recursive: true });
  // A stale SHA256SUMS must never describe new files.
  rmSync(join(dir, CHECKSUMS_NAME), { force: true });
  const binaries: ReleaseResult["binaries"] = [];
  for (const platform of platforms) {
    const target = RELEASE_TARGETS[platform];
    const local = runtimesDir ? join(resolve(runtimesDir), target) : undefined;
    const outFile = join(dir, `${BINARY_NAME}-${platform}`);
    const artifact = await buildBinary(outFile, commit, { target, executablePath: local && existsSync(local) ? local : undefined });
    binaries.push({ ...artifact, platform, sha256: sha256(outFile) });
  }
  const checksums = join(dir, CHECKSUMS_NAME);
  writeFileSync(checksums, binaries.map((b) => `${b.sha256}  ${basename(b.path)}\n`).join(""));
  return { version: packageVersion(), commit, binaries, checksums };
}

export function formatBytes(bytes: number): string {
  if (bytes >= 1024 * 1024) return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
  if (bytes >= 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${bytes} B`;
}

if (import.meta.main && process.argv.includes("--release")) {
  const started = performance.now();
  const release = await buildRelease();
  console.log(`understudy ${release.version} (${release.commit}) release built in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  for (const b of release.binaries) console.log(`  ${relative(process.cwd(), b.path).padEnd(40)} ${formatBytes(b.bytes).padStart(10)}  ${b.sha256}`);
  console.log(`  ${relative(process.cwd(), release.checksums)}`);
} else if (import.meta.main) {
  const started = performance.now();
  const built = await buildAll();
  const version = packageVersion();
  console.log(`understudy ${version} (${built.commit}) built in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  for (const artifact of [built.binary, built.nodeBundle]) {
    if (artifact) console.log(`  ${relative(process.cwd(), artifact.path).padEnd(24)} ${formatBytes(artifact.bytes).padStart(10)}`);
  }
}
