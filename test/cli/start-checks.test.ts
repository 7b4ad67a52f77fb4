import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, chownSync, copyFileSync, linkSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { newMasterKey, tempDir } from "../helpers";

// Directories the server must write, checked at start: a read-only temporary
// directory (`docker run --read-only`) and a data directory owned by another
// user (a root-owned bind mount on /data) each stop the start with the fix in
// the message, instead of a bare EROFS/EACCES (issue 9, items 14 and 15).
//
// Permission bits do not stop root, so as root the command runs as an
// unprivileged uid (setpriv); where that is not possible the tests are skipped
// (.ci/run runs as root with setpriv: they run there).

const MAIN = join(import.meta.dir, "..", "..", "src", "main.ts");
const NOBODY = 65534;
const isRoot = process.getuid?.() === 0;
const childUid = isRoot ? NOBODY : process.getuid!();
const childGid = isRoot ? NOBODY : process.getgid!();
const prefix = isRoot ? ["setpriv", `--reuid=${NOBODY}`, `--regid=${NOBODY}`, "--clear-groups", "--"] : [];

const dirs: { remove(): void }[] = [];
afterAll(() => dirs.forEach((d) => d.remove()));

/** A directory the child can read but not write, and one it owns. */
function layout() {
  const base = tempDir("understudy-start-checks-");
  dirs.push(base);
  chmodSync(base.path, 0o755);
  const mine = (name: string) => {
    const path = join(base.path, name);
    mkdirSync(path);
    if (isRoot) chownSync(path, childUid, childGid);
    return path;
  };
  const notMine = (name: string) => {
    const path = join(base.path, name);
    mkdirSync(path);
    // As root the directory stays root's (0755): the child, another uid, cannot write it.
    chmodSync(path, isRoot ? 0o755 : 0o555);
    return path;
  };
  return { mine, notMine };
}

async function run(args: string[], env: Record<string, string>, cwd: string) {
  const child = Bun.spawn([...prefix, ...command, ...args], {
    cwd,
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
  const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  clearTimeout(timer);
  return { code, stdout, stderr };
}

const probe = (argv: string[]) =>
  Bun.spawnSync([...prefix, ...argv, "version"], { env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: "/tmp" }, cwd: "/tmp" }).exitCode === 0;

/**
 * How to run the CLI as another uid: from the checkout when that uid can read
 * it; else (a checkout in a 0700 directory, as CI's clean clone is) from a
 * bundle of src/main.ts and a link to this Bun, in a directory it can read.
 * Undefined when this machine cannot run it as another uid (not root's
 * setpriv).
 */
async function unprivilegedCommand(): Promise<string[] | undefined> {
  if (!isRoot) return [process.execPath, MAIN];
  if (!Bun.which("setpriv")) return undefined;
  if (probe([process.execPath, MAIN])) return [process.execPath, MAIN];
  const dir = tempDir("understudy-start-checks-cli-");
  dirs.push(dir);
  chmodSync(dir.path, 0o755);
  const built = await Bun.build({ entrypoints: [MAIN], target: "bun", outdir: dir.path, external: ["better-sqlite3", "playwright-core"] });
  if (!built.success) return undefined;
  const bun = join(dir.path, "bun");
  try {
    linkSync(process.execPath, bun);
  } catch {
    copyFileSync(process.execPath, bun);
    chmodSync(bun, 0o755);
  }
  const argv = [bun, join(dir.path, "main.js")];
  return probe(argv) ? argv : undefined;
}
const command = (await unprivilegedCommand()) ?? [];
const unprivileged = command.length > 0;
if (!unprivileged) console.info("start-checks: skipped, cannot run the CLI as an unprivileged uid here (root without setpriv, or a checkout it cannot read)");

describe("a data directory this user cannot write", () => {
  test.skipIf(!unprivileged)("the command stops at once, naming the uid, the directory and the chown that fixes it", async () => {
    const { mine, notMine } = layout();
    const home = mine("home");
    const data = notMine("data");
    const result = await run(["tenants", "list", "--db", join(data, "understudy.db")], { HOME: home }, home);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`The data directory ${data} is not writable by this process (uid ${childUid})`);
    expect(result.stderr).toContain(`chown -R ${childUid}:${childGid} ${data}`);
    // The Docker image's uid, for a bind mount on /data.
    expect(result.stderr).toContain("uid 10001");
    expect(result.stderr).not.toContain("unexpected error");
  });
});

describe("a temporary directory that is not writable", () => {
  test.skipIf(!unprivileged)("serve stops at start, saying to add --tmpfs /tmp or set TMPDIR", async () => {
    const { mine, notMine } = layout();
    const home = mine("home");
    const data = mine("data");
    const workflows = mine("workflows");
    const tmp = notMine("tmp");
    const result = await run(
      ["serve"],
      {
        HOME: home,
        TMPDIR: tmp,
        UNDERSTUDY_DB: join(data, "understudy.db"),
        UNDERSTUDY_MASTER_KEY: newMasterKey().text,
        UNDERSTUDY_WORKFLOWS_DIR: workflows,
        UNDERSTUDY_LISTEN: "127.0.0.1:0",
      },
      home,
    );
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`The temporary directory ${tmp} is not writable`);
    expect(result.stderr).toContain("--tmpfs /tmp");
    expect(result.stderr).toContain("TMPDIR");
    expect(result.stderr).not.toContain("unexpected error");
    // It never got as far as listening.
    expect(result.stderr).not.toContain("listening on");
  });
});
