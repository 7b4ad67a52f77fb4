import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { chmod, lstat, mkdir, mkdtemp, readdir, readFile, readlink, realpath, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative, sep } from "node:path";
import { gzipSync } from "node:zlib";
import { pack, type Header } from "tar-stream";
import {
  ArchiveError,
  DEFAULT_ARCHIVE_LIMITS,
  maxTarBytes,
  readArchive,
  writeArchive,
  type Archive,
  type ArchiveErrorReason,
  type ArchiveLimits,
} from "../../src/deployments/archive";

// ---------------------------------------------------------------------------
// Building archives

/** A marker put in hostile files' contents: no error message may ever contain it. */
const SECRET = "TOP-SECRET-CONTENT";

interface Spec {
  name: string;
  type?: Header["type"];
  data?: string | Uint8Array;
  mode?: number;
  linkname?: string;
}

const file = (name: string, data: string | Uint8Array = SECRET, mode = 0o644): Spec => ({ name, data, mode });
const dir = (name: string, mode = 0o755): Spec => ({ name, type: "directory", mode });
const link = (name: string, linkname: string): Spec => ({ name, type: "symlink", linkname, mode: 0o777 });
const hardlink = (name: string, linkname: string): Spec => ({ name, type: "link", linkname, mode: 0o644 });

/** A tar as tar-stream's packer writes it (ustar, pax headers for long or non-ASCII names). */
async function tarOf(specs: Spec[]): Promise<Buffer> {
  const packer = pack();
  for (const spec of specs) {
    const { data, ...header } = spec;
    const type = header.type ?? "file";
    const body = data === undefined ? undefined : typeof data === "string" ? Buffer.from(data) : data;
    const entry: Parameters<typeof packer.entry>[0] = { ...header, type, uid: 1000, gid: 1000, uname: "mallory", gname: "mallory" };
    if (body !== undefined) packer.entry(entry, body);
    else packer.entry(entry);
  }
  packer.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of packer) chunks.push(Buffer.from(chunk as Uint8Array));
  return Buffer.concat(chunks);
}

async function sourceOf(specs: Spec[]): Promise<string> {
  return gzipSync(await tarOf(specs)).toString("base64");
}

function octal(buf: Buffer, offset: number, length: number, value: number): void {
  buf.write(`${value.toString(8).padStart(length - 1, "0")}\0`, offset, "latin1");
}

/** A hand-made ustar header: lets a test write what no packer would (odd typeflags, bytes that are not UTF-8, lying sizes). */
function rawHeader(h: { name: string | Uint8Array; typeflag: string; size?: number; mode?: number; linkname?: string }): Buffer {
  const buf = Buffer.alloc(512);
  Buffer.from(h.name).copy(buf, 0, 0, 100);
  octal(buf, 100, 8, h.mode ?? 0o644);
  octal(buf, 108, 8, 0);
  octal(buf, 116, 8, 0);
  octal(buf, 124, 12, h.size ?? 0);
  octal(buf, 136, 12, 1_700_000_000);
  buf.write(h.typeflag, 156, "latin1");
  if (h.linkname) buf.write(h.linkname, 157, 100);
  buf.write("ustar\0", 257, "latin1");
  buf.write("00", 263, "latin1");
  buf.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of buf) sum += byte;
  buf.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, "latin1");
  return buf;
}

function padded(data: string | Uint8Array): Buffer {
  const bytes = Buffer.from(data);
  return Buffer.concat([bytes, Buffer.alloc((512 - (bytes.length % 512)) % 512)]);
}

/** A pax extended header ("x"): its records apply to the next entry, e.g. a `path` that ustar cannot hold. */
function paxHeader(records: Record<string, string>): Buffer {
  let body = "";
  for (const [key, value] of Object.entries(records)) {
    const line = ` ${key}=${value}\n`;
    let length = Buffer.byteLength(line) + 1;
    while (String(length).length + Buffer.byteLength(line) !== length) length = String(length).length + Buffer.byteLength(line);
    body += `${length}${line}`;
  }
  return Buffer.concat([rawHeader({ name: "PaxHeader", typeflag: "x", size: Buffer.byteLength(body) }), padded(body)]);
}

const END_OF_ARCHIVE = Buffer.alloc(1024);

function sourceOfBlocks(...blocks: Buffer[]): string {
  return gzipSync(Buffer.concat([...blocks, END_OF_ARCHIVE])).toString("base64");
}

const base64 = (data: string | Uint8Array) => Buffer.from(data).toString("base64");

// ---------------------------------------------------------------------------
// A workspace per test: the target folder and a canary sibling

let workspace: string;
let target: string;

beforeEach(async () => {
  workspace = await mkdtemp(join(tmpdir(), "understudy-archive-"));
  target = join(workspace, "deploy");
  await mkdir(join(workspace, "canary"));
  await writeFile(join(workspace, "canary", "keep.txt"), "canary\n");
});

afterEach(async () => {
  await rm(workspace, { recursive: true, force: true });
});

/** Every path under `root`, with its type, mode and contents (or link target): what a user would find. */
async function snapshot(root: string): Promise<string[]> {
  const lines: string[] = [];
  async function walk(directory: string): Promise<void> {
    for (const name of (await readdir(directory)).sort()) {
      const path = join(directory, name);
      const stats = await lstat(path);
      const rel = relative(root, path);
      const mode = (stats.mode & 0o7777).toString(8);
      if (stats.isSymbolicLink()) lines.push(`${rel} -> ${await readlink(path)}`);
      else if (stats.isDirectory()) {
        lines.push(`${rel}/ ${mode}`);
        await walk(path);
      } else if (stats.isFile()) lines.push(`${rel} ${mode} ${JSON.stringify(await readFile(path, "utf8"))}`);
      else lines.push(`${rel} other`);
    }
  }
  await walk(root);
  return lines;
}

/** 0o755 for directories and 0o644 for files, whatever the umask made them. */
async function normaliseModes(directory: string): Promise<void> {
  for (const entry of await readdir(directory, { withFileTypes: true })) {
    const path = join(directory, entry.name);
    if (entry.isDirectory()) {
      await chmod(path, 0o755);
      await normaliseModes(path);
    } else if (entry.isFile()) await chmod(path, 0o644);
  }
}

async function exists(path: string): Promise<boolean> {
  return lstat(path).then(
    () => true,
    () => false,
  );
}

/** Reads and writes `source` the way a deploy would, and checks it is refused with nothing written anywhere. */
async function expectRefused(
  source: string,
  reason: ArchiveErrorReason,
  message: RegExp,
  limits: ArchiveLimits = DEFAULT_ARCHIVE_LIMITS,
): Promise<ArchiveError> {
  const before = await snapshot(workspace);
  let caught: unknown;
  try {
    const archive = await readArchive(source, limits);
    await writeArchive(archive, target);
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(ArchiveError);
  const error = caught as ArchiveError;
  expect({ reason: error.reason, message: error.message }).toEqual({ reason, message: expect.stringMatching(message) });
  expect(error.message).not.toContain(SECRET);
  expect(error.message).not.toMatch(/[\u0000-\u001f\u007f-\u009f]/);
  expect(error.message.length).toBeLessThan(700);
  expect(await exists(target)).toBe(false);
  expect(await snapshot(workspace)).toEqual(before);
  expect(await exists(join(workspace, "escaped"))).toBe(false);
  return error;
}

async function unpack(source: string, limits?: ArchiveLimits): Promise<{ archive: Archive; tree: string[] }> {
  const archive = await readArchive(source, limits);
  await writeArchive(archive, target);
  return { archive, tree: await snapshot(target) };
}

// ---------------------------------------------------------------------------
// Accepted uploads

const libretto = {
  index: 'export { hello } from "./.libretto-share/source/src/x.ts";\n',
  packageJson: '{"type":"module","dependencies":{"libretto":"0.6.45"}}\n',
  workflows: '{"workflows":[{"name":"hello","credentialNames":[]}]}\n',
  source: "export const hello = 1;\n",
  librettoPackage: '{"name":"libretto","bin":"bin/cli.js"}\n',
  cli: "#!/usr/bin/env node\n",
};

/** What `tar czf x.tar.gz -C outdir .` holds for a libretto project, directories included. */
const librettoProject: Spec[] = [
  dir("./"),
  file("./index.js", libretto.index),
  file("./package.json", libretto.packageJson),
  file("./.libretto-workflows.json", libretto.workflows),
  dir("./.libretto-share/"),
  dir("./.libretto-share/source/"),
  dir("./.libretto-share/source/src/"),
  file("./.libretto-share/source/src/x.ts", libretto.source),
  dir("./libretto/"),
  file("./libretto/package.json", libretto.librettoPackage),
  dir("./libretto/bin/"),
  file("./libretto/bin/cli.js", libretto.cli, 0o755),
  dir("./node_modules/"),
  link("./node_modules/libretto", "../libretto"),
];

describe("readArchive and writeArchive accept", () => {
  test("a libretto-shaped upload, unpacked exactly: contents, modes, the symlink, nothing else", async () => {
    const { archive, tree } = await unpack(await sourceOf(librettoProject));

    expect(tree).toEqual([
      `.libretto-share/ 755`,
      `.libretto-share/source/ 755`,
      `.libretto-share/source/src/ 755`,
      `.libretto-share/source/src/x.ts 644 ${JSON.stringify(libretto.source)}`,
      `.libretto-workflows.json 644 ${JSON.stringify(libretto.workflows)}`,
      `index.js 644 ${JSON.stringify(libretto.index)}`,
      `libretto/ 755`,
      `libretto/bin/ 755`,
      `libretto/bin/cli.js 755 ${JSON.stringify(libretto.cli)}`,
      `libretto/package.json 644 ${JSON.stringify(libretto.librettoPackage)}`,
      `node_modules/ 755`,
      `node_modules/libretto -> ../libretto`,
      `package.json 644 ${JSON.stringify(libretto.packageJson)}`,
    ]);
    expect((await stat(target)).mode & 0o7777).toBe(0o755);
    expect(await readFile(join(target, "node_modules", "libretto", "package.json"), "utf8")).toBe(libretto.librettoPackage);
    expect(await snapshot(join(workspace, "canary"))).toEqual(['keep.txt 644 "canary\\n"']);
    expect(await readdir(workspace)).toEqual(expect.arrayContaining(["canary", "deploy"]));
    expect((await readdir(workspace)).length).toBe(2);

    const sizes = Object.values(libretto).reduce((sum, text) => sum + Buffer.byteLength(text), 0);
    expect(archive.totalBytes).toBe(sizes);
    expect(archive.files.map((f) => f.path)).toEqual([
      "index.js",
      "package.json",
      ".libretto-workflows.json",
      ".libretto-share/source/src/x.ts",
      "libretto/package.json",
      "libretto/bin/cli.js",
    ]);
    expect(archive.directories).toEqual([
      ".libretto-share",
      ".libretto-share/source",
      ".libretto-share/source/src",
      "libretto",
      "libretto/bin",
      "node_modules",
    ]);
    expect(archive.symlinks).toEqual([{ path: "node_modules/libretto", target: "../libretto" }]);
    expect(archive.isFile("index.js")).toBe(true);
    expect(archive.isFile("./index.js")).toBe(true);
    expect(archive.isFile("libretto")).toBe(false);
    expect(archive.isFile("node_modules/libretto")).toBe(false);
    expect(archive.isFile("missing.js")).toBe(false);
    expect(archive.isFile("../index.js")).toBe(false);
    expect(archive.has("libretto")).toBe(true);
    expect(archive.kindOf("node_modules/libretto")).toBe("symlink");
    expect(archive.kindOf("libretto")).toBe("directory");
    expect(Buffer.from(archive.file("package.json")!.data).toString()).toBe(libretto.packageJson);
    expect(archive.file("libretto")).toBeUndefined();
  });

  test.skipIf(spawnSync("tar", ["--version"]).status !== 0)("what GNU tar writes for `tar czf x.tar.gz -C outdir .`", async () => {
    const outdir = join(workspace, "outdir");
    await mkdir(join(outdir, ".libretto-share", "source", "src"), { recursive: true });
    await mkdir(join(outdir, "libretto", "bin"), { recursive: true });
    await mkdir(join(outdir, "node_modules"));
    await writeFile(join(outdir, "index.js"), libretto.index);
    await writeFile(join(outdir, "package.json"), libretto.packageJson);
    await writeFile(join(outdir, ".libretto-workflows.json"), libretto.workflows);
    await writeFile(join(outdir, ".libretto-share", "source", "src", "x.ts"), libretto.source);
    await writeFile(join(outdir, "libretto", "bin", "cli.js"), libretto.cli);
    await writeFile(join(outdir, "libretto", "package.json"), libretto.librettoPackage);
    // A long name, which GNU tar stores with a GNU long-name header.
    const longName = `${"deep-directory-name/".repeat(8)}file-with-a-long-name.js`;
    await mkdir(join(outdir, ".libretto-share", "source", ...longName.split("/").slice(0, -1)), { recursive: true });
    await writeFile(join(outdir, ".libretto-share", "source", longName), libretto.source);
    await symlink("../libretto", join(outdir, "node_modules", "libretto"));
    await normaliseModes(outdir);
    await chmod(join(outdir, "libretto", "bin", "cli.js"), 0o755);
    const tarball = join(workspace, "x.tar.gz");
    const result = spawnSync("tar", ["czf", tarball, "-C", outdir, "."]);
    expect(result.status).toBe(0);

    const { archive } = await unpack((await readFile(tarball)).toString("base64"));

    expect(await snapshot(target)).toEqual(await snapshot(outdir));
    expect(archive.isFile(`.libretto-share/source/${longName}`)).toBe(true);
  });

  test("modes keep only the executable bit: no setuid, setgid, sticky or private modes; owners ignored", async () => {
    const previousUmask = process.umask(0o077);
    try {
      const { archive, tree } = await unpack(
        await sourceOf([
          dir("sticky/", 0o1777),
          dir("private/", 0o700),
          file("sticky/setuid", "a", 0o4755),
          file("private/setgid", "b", 0o2711),
          file("private/secret", "c", 0o600),
          file("private/odd", "d", 0o7000),
        ]),
      );
      expect(tree).toEqual([
        "private/ 755",
        'private/odd 644 "d"',
        'private/secret 644 "c"',
        'private/setgid 755 "b"',
        "sticky/ 755",
        'sticky/setuid 755 "a"',
      ]);
      expect(archive.files.map((f) => f.executable)).toEqual([true, true, false, false]);
    } finally {
      process.umask(previousUmask);
    }
  });

  test("a hard link to an earlier file is written as an independent copy", async () => {
    const { archive, tree } = await unpack(
      await sourceOf([file("bin/tool", "#!/bin/sh\n", 0o755), hardlink("bin/tool-copy", "./bin/tool")]),
    );
    expect(tree).toEqual(["bin/ 755", 'bin/tool 755 "#!/bin/sh\\n"', 'bin/tool-copy 755 "#!/bin/sh\\n"']);
    const [original, copy] = await Promise.all([stat(join(target, "bin/tool")), stat(join(target, "bin/tool-copy"))]);
    expect(copy.ino).not.toBe(original.ino);
    expect(copy.nlink).toBe(1);
    expect(archive.totalBytes).toBe(20);
  });

  test("directories repeated, listed after their files, or only implied by names", async () => {
    const { archive, tree } = await unpack(
      await sourceOf([file("a/b/c.txt", "c"), dir("a/"), dir("a/b/"), dir("./a/"), dir("empty/"), file("x/y.txt", "y")]),
    );
    expect(tree).toEqual(["a/ 755", "a/b/ 755", 'a/b/c.txt 644 "c"', "empty/ 755", "x/ 755", 'x/y.txt 644 "y"']);
    expect(archive.directories).toEqual(["a", "a/b", "empty", "x"]);
  });

  test("long names (pax headers) up to 1,000 bytes, and non-ASCII names", async () => {
    const longPath = `${"segment-of-twenty-ch/".repeat(45)}${"f".repeat(50)}.txt`;
    expect(Buffer.byteLength(longPath)).toBeLessThanOrEqual(1000);
    const { archive } = await unpack(await sourceOf([file(longPath, "long"), file("données/résumé ✓.txt", "utf8")]));
    expect(await readFile(join(target, longPath), "utf8")).toBe("long");
    expect(await readFile(join(target, "données", "résumé ✓.txt"), "utf8")).toBe("utf8");
    expect(archive.isFile(longPath)).toBe(true);
  });

  test("symbolic links that stay inside: to the root, to a sibling, through other links, dangling inside", async () => {
    const { tree } = await unpack(
      await sourceOf([
        file("lib/real.js", "real"),
        link("root", "."),
        link("lib/up", ".."),
        link("lib/alias.js", "./real.js"),
        link("deep/a/b/to-lib", "../../../lib/"),
        link("via-link", "lib/up/lib/real.js"),
        link("dangling", "not-there/yet"),
      ]),
    );
    expect(tree).toContain("deep/a/b/to-lib -> ../../../lib/");
    expect(await readFile(join(target, "via-link"), "utf8")).toBe("real");
    expect(await readFile(join(target, "deep/a/b/to-lib/alias.js"), "utf8")).toBe("real");
    expect(await realpath(join(target, "lib/up"))).toBe(await realpath(target));
  });

  test("limits are inclusive: exactly maxEntries entries and maxUnpackedBytes bytes pass", async () => {
    const limits = { maxUploadBytes: 64 * 1024, maxUnpackedBytes: 300, maxEntries: 4 };
    const { archive } = await unpack(
      await sourceOf([dir("./"), dir("d/"), file("d/one", "x".repeat(100)), file("d/two", "y".repeat(200))]),
      limits,
    );
    expect(archive.totalBytes).toBe(300);
  });

  test("the default limits are the documented ones, and their gunzip cap stays bounded", () => {
    expect(DEFAULT_ARCHIVE_LIMITS).toEqual({ maxUploadBytes: 50 * 2 ** 20, maxUnpackedBytes: 250 * 2 ** 20, maxEntries: 20_000 });
    expect(maxTarBytes(DEFAULT_ARCHIVE_LIMITS)).toBeLessThan(340 * 2 ** 20);
    expect(Object.isFrozen(DEFAULT_ARCHIVE_LIMITS)).toBe(true);
  });
});

// ---------------------------------------------------------------------------
// Refused uploads: each is refused as a whole, with a clear message, and
// nothing is written anywhere (the target does not exist, the canary sibling
// is untouched, no "escaped" file appears in the workspace).

interface HostileCase {
  title: string;
  reason: ArchiveErrorReason;
  message: RegExp;
  source: () => Promise<string> | string;
  limits?: ArchiveLimits;
}

const small: ArchiveLimits = { maxUploadBytes: 64 * 1024, maxUnpackedBytes: 1000, maxEntries: 10 };

const hostileCases: HostileCase[] = [
  // Names
  { title: "../x", reason: "unsafe-name", message: /"\.\.\/escaped" has a "\.\." segment/, source: () => sourceOf([file("../escaped")]) },
  { title: "a/../../x", reason: "unsafe-name", message: /"a\/\.\.\/\.\.\/escaped" has a "\.\." segment/, source: () => sourceOf([file("a/../../escaped")]) },
  { title: "./../x", reason: "unsafe-name", message: /has a "\.\." segment/, source: () => sourceOf([file("./../escaped")]) },
  { title: "a trailing ..", reason: "unsafe-name", message: /has a "\.\." segment/, source: () => sourceOf([dir("a/.."), file("b")]) },
  { title: "an absolute path", reason: "unsafe-name", message: /is an absolute path/, source: () => sourceOf([file(join(workspace, "escaped"))]) },
  { title: "/etc/x", reason: "unsafe-name", message: /"\/etc\/understudy-test" is an absolute path/, source: () => sourceOf([file("/etc/understudy-test")]) },
  { title: "an absolute path behind ./", reason: "unsafe-name", message: /is an absolute path/, source: () => sourceOf([file(`./${join(workspace, "escaped")}`)]) },
  { title: "an absolute path behind ././", reason: "unsafe-name", message: /is an absolute path/, source: () => sourceOf([file(`././/${join(workspace, "escaped")}`)]) },
  { title: "a Windows drive letter", reason: "unsafe-name", message: /starts with a drive letter/, source: () => sourceOf([file("C:/Windows/escaped")]) },
  { title: "a drive-relative Windows path", reason: "unsafe-name", message: /starts with a drive letter/, source: () => sourceOf([file("./c:escaped")]) },
  { title: "backslashes", reason: "unsafe-name", message: /contains a backslash/, source: () => sourceOf([file("a\\..\\..\\escaped")]) },
  { title: "an empty segment", reason: "unsafe-name", message: /empty or "\." segment/, source: () => sourceOf([file("a//escaped")]) },
  { title: "a . segment", reason: "unsafe-name", message: /empty or "\." segment/, source: () => sourceOf([file("a/./escaped")]) },
  { title: "a file named as the root", reason: "unsafe-name", message: /names the root of the archive but is a symbolic link/, source: () => sourceOf([link("./", "/"), file("x")]) },
  {
    title: "NUL in a name (pax)",
    reason: "unsafe-name",
    message: /"evil\\u0000\.js" contains a control character/,
    source: () => sourceOfBlocks(paxHeader({ path: "evil\u0000.js" }), rawHeader({ name: "placeholder", typeflag: "0", size: 1 }), padded("x")),
  },
  { title: "a line break in a name", reason: "unsafe-name", message: /"a\\u000ab" contains a control character/, source: () => sourceOf([file("a\nb")]) },
  { title: "an escape sequence in a name", reason: "unsafe-name", message: /contains a control character/, source: () => sourceOf([file("\u001b[31mred")]) },
  {
    title: "a name that is not UTF-8",
    reason: "unsafe-name",
    message: /is not valid UTF-8/,
    source: () => sourceOfBlocks(rawHeader({ name: Uint8Array.from([0x61, 0xff, 0x62]), typeflag: "0", size: 1 }), padded("x")),
  },
  { title: "a name over 1,000 bytes", reason: "unsafe-name", message: /is longer than 1000 bytes/, source: () => sourceOf([file(`${"abcdefghi/".repeat(100)}x`)]) },
  { title: "a segment over 255 bytes", reason: "unsafe-name", message: /has a path segment over 255 bytes/, source: () => sourceOf([file(`a/${"b".repeat(256)}`)]) },

  // Symbolic links
  { title: "a symlink to /etc", reason: "unsafe-link", message: /"etc" points to "\/etc", an absolute path/, source: () => sourceOf([link("etc", "/etc")]) },
  { title: "a symlink to the canary, absolute", reason: "unsafe-link", message: /an absolute path/, source: () => sourceOf([file("x"), link("canary", join(workspace, "canary"))]) },
  { title: "a symlink ../../outside", reason: "unsafe-link", message: /"a\/link" points to "\.\.\/\.\.\/outside", which is outside the archive/, source: () => sourceOf([file("x"), link("a/link", "../../outside")]) },
  { title: "a symlink .. at the root", reason: "unsafe-link", message: /outside the archive/, source: () => sourceOf([file("x"), link("up", "..")]) },
  { title: "a symlink to a Windows drive", reason: "unsafe-link", message: /an absolute path/, source: () => sourceOf([link("win", "C:/Windows")]) },
  {
    title: "a symlink whose .. follows another link (d/l -> .., e -> d/l/../..)",
    reason: "unsafe-link",
    message: /"e" points to "d\/l\/\.\.\/\.\.", which goes back up .*put all "\.\." segments first/,
    source: () => sourceOf([file("x"), link("d/l", ".."), link("e", "d/l/../..")]),
  },
  { title: "a symlink with an empty target", reason: "unsafe-link", message: /an empty target/, source: () => sourceOf([file("x"), link("empty", "")]) },
  {
    title: "a symlink target with a control character",
    reason: "unsafe-link",
    message: /"bad" has a target that contains a control character/,
    source: () => sourceOfBlocks(paxHeader({ linkpath: "a\u0000/../../escaped" }), rawHeader({ name: "bad", typeflag: "2" })),
  },
  { title: "a symlink target with backslashes", reason: "unsafe-link", message: /contains a backslash/, source: () => sourceOf([link("bad", "..\\..\\escaped")]) },
  {
    title: "a symlink carrying data",
    reason: "not-tar",
    message: /"sneaky" is a symbolic link but carries 512 bytes of data/,
    source: () => sourceOfBlocks(rawHeader({ name: "sneaky", typeflag: "2", linkname: "x", size: 512 }), padded("y".repeat(512))),
  },

  // Writing through a link
  {
    title: "symlink then write through it (inside target)",
    reason: "conflict",
    message: /"a\/passwd" goes through the symbolic link "a"/,
    source: () => sourceOf([dir("sub/"), link("a", "sub"), file("a/passwd")]),
  },
  { title: "symlink to /etc then write through it", reason: "unsafe-link", message: /points to "\/etc"/, source: () => sourceOf([link("a", "/etc"), file("a/passwd")]) },
  {
    title: "a directory entry through a symlink",
    reason: "conflict",
    message: /goes through the symbolic link "lib\/up"/,
    source: () => sourceOf([link("lib/up", ".."), dir("lib/up/x/"), file("y")]),
  },
  {
    title: "a symlink replacing a directory already used",
    reason: "conflict",
    message: /"a" appears twice, as a directory and as a symbolic link/,
    source: () => sourceOf([file("a/passwd"), link("a", "b")]),
  },

  // Hard links
  { title: "a hard link to /etc/passwd", reason: "unsafe-link", message: /"h" points to "\/etc\/passwd", which is not a regular file earlier in the archive/, source: () => sourceOf([file("x"), hardlink("h", "/etc/passwd")]) },
  { title: "a hard link to ../outside", reason: "unsafe-link", message: /not a regular file earlier in the archive/, source: () => sourceOf([file("x"), hardlink("h", "../escaped")]) },
  { title: "a hard link to a file not in the archive", reason: "unsafe-link", message: /"missing\.txt", which is not a regular file earlier/, source: () => sourceOf([file("x"), hardlink("h", "missing.txt")]) },
  { title: "a hard link before its file", reason: "unsafe-link", message: /not a regular file earlier/, source: () => sourceOf([hardlink("h", "later.txt"), file("later.txt")]) },
  { title: "a hard link to a directory", reason: "unsafe-link", message: /not a regular file earlier/, source: () => sourceOf([dir("d/"), file("x"), hardlink("h", "d")]) },
  { title: "a hard link to a symlink", reason: "unsafe-link", message: /not a regular file earlier/, source: () => sourceOf([file("x"), link("s", "x"), hardlink("h", "s")]) },

  // Types
  { title: "a character device", reason: "unsupported-type", message: /"dev\/null" is a character device; only regular files, directories and symbolic links/, source: () => sourceOf([file("x"), { name: "dev/null", type: "character-device", mode: 0o666 }]) },
  { title: "a block device", reason: "unsupported-type", message: /"disk" is a block device/, source: () => sourceOf([{ name: "disk", type: "block-device" }]) },
  { title: "a FIFO", reason: "unsupported-type", message: /"pipe" is a FIFO/, source: () => sourceOf([file("x"), { name: "pipe", type: "fifo" }]) },
  { title: "a contiguous file", reason: "unsupported-type", message: /"c" is a contiguous file/, source: () => sourceOf([{ name: "c", type: "contiguous-file", data: "x" }]) },
  { title: "a GNU sparse file (unknown type)", reason: "unsupported-type", message: /"sparse" is an entry of an unknown type/, source: () => sourceOfBlocks(rawHeader({ name: "sparse", typeflag: "S" })) },
  { title: "a volume label (unknown type)", reason: "unsupported-type", message: /an entry of an unknown type/, source: () => sourceOfBlocks(rawHeader({ name: "label", typeflag: "V" })) },

  // Structure
  { title: "the same file twice", reason: "conflict", message: /"index\.js" appears twice; each path can appear only once/, source: () => sourceOf([file("index.js", "a"), file("./index.js", "b")]) },
  { title: "a path as a file and a directory", reason: "conflict", message: /"lib" appears twice, as a file and as a directory/, source: () => sourceOf([file("lib"), dir("lib/")]) },
  { title: "a file inside a file", reason: "conflict", message: /"lib\/x" is inside "lib", which is a file/, source: () => sourceOf([file("lib"), file("lib/x")]) },

  // Sizes and counts
  {
    title: "a gzip bomb (1 GiB of zeros) under the default limits",
    reason: "decompressed-too-large",
    message: /decompresses to more than \d+(\.\d)? MiB, over the limit for a deployment \(250 MiB of files\)/,
    source: () => {
      // 16 gzip members of 64 MiB each: a valid 1 GiB stream built from ~1 MiB.
      const member = gzipSync(Buffer.alloc(64 * 2 ** 20), { level: 9 });
      return Buffer.concat(Array.from({ length: 16 }, () => member)).toString("base64");
    },
  },
  {
    title: "a gzip bomb that is a valid tar, under small limits",
    reason: "decompressed-too-large",
    message: /decompresses to more than/,
    source: () => gzipSync(Buffer.concat([rawHeader({ name: "big", typeflag: "0", size: 8 * 2 ** 20 }), Buffer.alloc(8 * 2 ** 20)])).toString("base64"),
    limits: small,
  },
  {
    title: "an upload over maxUploadBytes",
    reason: "upload-too-large",
    message: /is 2 KiB of gzip data, over the 1 KiB limit/,
    source: () => base64(Buffer.alloc(2048, 7)),
    limits: { ...small, maxUploadBytes: 1024 },
  },
  {
    title: "too many entries",
    reason: "too-many-entries",
    message: /more than 10 entries/,
    source: () => sourceOf(Array.from({ length: 11 }, (_, i) => file(`f${i}`, "x"))),
    limits: small,
  },
  {
    title: "too many directories implied by one name",
    reason: "too-many-entries",
    message: /more than 10 entries .*including directories implied by names/,
    source: () => sourceOf([file(`${"d/".repeat(12)}deep.txt`, "x")]),
    limits: small,
  },
  {
    title: "the same directory repeated past the entry limit",
    reason: "too-many-entries",
    message: /more than 10 entries/,
    source: () => sourceOf([file("x"), ...Array.from({ length: 10 }, () => dir("d/"))]),
    limits: small,
  },
  {
    title: "unpacked total over the cap",
    reason: "unpacked-too-large",
    message: /unpacks to more than 1000 bytes \(reached at "b\.txt"\)/,
    source: () => sourceOf([file("a.txt", "a".repeat(600)), file("b.txt", "b".repeat(600))]),
    limits: small,
  },
  {
    title: "hard-link copies count toward the unpacked total",
    reason: "unpacked-too-large",
    message: /reached at "copy"/,
    source: () => sourceOf([file("a.txt", "a".repeat(600)), hardlink("copy", "a.txt")]),
    limits: small,
  },
  {
    title: "a header claiming 8 GiB, refused before its data is read",
    reason: "unpacked-too-large",
    message: /unpacks to more than 250 MiB \(reached at "huge"\)/,
    source: () => sourceOfBlocks(rawHeader({ name: "huge", typeflag: "0", size: 8 * 2 ** 30 - 1 }), padded("only a little data")),
  },

  // Encoding and framing
  { title: "an empty source", reason: "invalid-encoding", message: /source is empty/, source: () => "" },
  { title: "invalid base64", reason: "invalid-encoding", message: /not valid base64/, source: () => "this is not base64!" },
  { title: "base64 of the wrong length", reason: "invalid-encoding", message: /not valid base64/, source: () => "H4sIA" },
  { title: "base64url instead of base64", reason: "invalid-encoding", message: /not valid base64/, source: () => "H4sI-_-_" },
  { title: "base64 with line breaks", reason: "invalid-encoding", message: /no spaces or line breaks/, source: async () => (await sourceOf([file("x")])).replace(/(.{16})/, "$1\n") },
  { title: "padding in the middle", reason: "invalid-encoding", message: /not valid base64/, source: () => "H4s=H4sI" },
  { title: "not gzip (plain text)", reason: "not-gzip", message: /not gzip data/, source: () => base64("hello, this is not an archive") },
  { title: "not gzip (an uncompressed tar)", reason: "not-gzip", message: /not gzip data/, source: async () => base64(await tarOf([file("x")])) },
  { title: "a truncated gzip stream", reason: "not-gzip", message: /not valid gzip data \(it is corrupt or truncated\)/, source: async () => base64(Buffer.from(await sourceOf([file("x", "y".repeat(5000))]), "base64").subarray(0, 40)) },
  { title: "a corrupt gzip stream", reason: "not-gzip", message: /not valid gzip data/, source: () => base64(Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xff, 0xff, 0xff, 0xff])) },
  { title: "gzip of short text", reason: "not-tar", message: /gzip data but not a valid tar archive \(it ends in the middle of an entry\)/, source: () => gzipSync("hello, not a tar").toString("base64") },
  { title: "gzip of text longer than a header", reason: "not-tar", message: /not a valid tar archive \(a header is corrupt\)/, source: () => gzipSync("A".repeat(4096)).toString("base64") },
  { title: "a tar cut in the middle of a file", reason: "not-tar", message: /ends in the middle of an entry/, source: () => gzipSync(rawHeader({ name: "cut", typeflag: "0", size: 100 })).toString("base64") },
  { title: "an empty tar", reason: "empty", message: /holds no files/, source: async () => sourceOf([]) },
  { title: "gzip of nothing", reason: "empty", message: /holds no files/, source: () => gzipSync(Buffer.alloc(0)).toString("base64") },
  { title: "only directories", reason: "empty", message: /holds no files/, source: () => sourceOf([dir("./"), dir("./src/")]) },
  { title: "only a symlink", reason: "empty", message: /holds no files/, source: () => sourceOf([link("a", "b")]) },
];

describe("readArchive refuses, and nothing is written", () => {
  for (const hostile of hostileCases) {
    test(hostile.title, async () => {
      await expectRefused(await hostile.source(), hostile.reason, hostile.message, hostile.limits);
    });
  }

  test("a long hostile name is quoted escaped and truncated to about 200 characters", async () => {
    const name = `${"\u202e".repeat(3)}${"x/".repeat(150)}../escaped`;
    const error = await expectRefused(await sourceOf([file(name)]), "unsafe-name", /has a "\.\." segment/);
    expect(error.message).toContain('"\\u202e\\u202e\\u202ex/x/x/');
    expect(error.message).toContain(`..." (${name.length - 200} more characters)`);
    expect(error.message).not.toContain("\u202e");
  });

  test("an invalid limit is a programming error, not an ArchiveError", async () => {
    const source = await sourceOf([file("x")]);
    await expect(readArchive(source, { ...small, maxEntries: 0 })).rejects.toThrow(TypeError);
    await expect(readArchive(source, { ...small, maxUnpackedBytes: 4 * 2 ** 30 })).rejects.toThrow(TypeError);
  });
});

// ---------------------------------------------------------------------------
// writeArchive's own guarantees

describe("writeArchive", () => {
  test("refuses a target that already exists and leaves it untouched", async () => {
    const archive = await readArchive(await sourceOf([file("index.js", "new")]));
    await mkdir(target);
    await writeFile(join(target, "index.js"), "old");
    await expect(writeArchive(archive, target)).rejects.toThrow(/already exists/);
    expect(await snapshot(target)).toEqual(['index.js 644 "old"']);
  });

  test("creates a missing parent of the target", async () => {
    const archive = await readArchive(await sourceOf([file("index.js", "x")]));
    const nested = join(workspace, "deployments", "tenant", "d1");
    await writeArchive(archive, nested);
    expect(await snapshot(nested)).toEqual(['index.js 644 "x"']);
  });

  /** An Archive not made by readArchive: writeArchive must check it again. */
  function handMade(parts: Partial<Pick<Archive, "files" | "directories" | "symlinks">>): Archive {
    return {
      files: parts.files ?? [],
      directories: parts.directories ?? [],
      symlinks: parts.symlinks ?? [],
      totalBytes: 0,
      kindOf: () => undefined,
      has: () => false,
      isFile: () => false,
      file: () => undefined,
    };
  }

  const bytes = (text: string) => new TextEncoder().encode(text);

  for (const [title, archive, message] of [
    ["a file path with ..", handMade({ files: [{ path: "../escaped", data: bytes(SECRET), executable: false }] }), /"\.\." segment/],
    ["an absolute file path", () => handMade({ files: [{ path: join(workspace, "escaped"), data: bytes(SECRET), executable: false }] }), /absolute path/],
    ["a directory path with ..", handMade({ directories: ["a/../../escaped"] }), /"\.\." segment/],
    ["a symlink escaping", handMade({ symlinks: [{ path: "x", target: "../escaped" }] }), /outside the archive/],
    ["a symlink to an absolute path", handMade({ symlinks: [{ path: "./x", target: "/" }] }), /absolute path/],
    [
      "a symlink inside a symlink (d/l -> .., d/l/e -> ..)",
      handMade({ symlinks: [{ path: "d/l", target: ".." }, { path: "d/l/e", target: ".." }] }),
      /goes through the symbolic link "d\/l"/,
    ],
    [
      "a file through a symlink",
      handMade({ files: [{ path: "s/escaped", data: bytes(SECRET), executable: false }], symlinks: [{ path: "s", target: "." }] }),
      /appears twice, as a directory and as a symbolic link/,
    ],
    [
      "the same file twice",
      handMade({ files: [{ path: "a", data: bytes("1"), executable: false }, { path: "a", data: bytes("2"), executable: false }] }),
      /appears twice/,
    ],
  ] as const) {
    test(`re-checks an archive it did not read: ${title}`, async () => {
      const before = await snapshot(workspace);
      const candidate = typeof archive === "function" ? archive() : archive;
      const error = await writeArchive(candidate, target).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ArchiveError);
      expect((error as Error).message).toMatch(message);
      expect(await exists(target)).toBe(false);
      expect(await snapshot(workspace)).toEqual(before);
    });
  }

  test("a failure in the middle of writing removes the target completely and rethrows", async () => {
    const unreadable = new Proxy(new Uint8Array(1), {
      get() {
        throw new Error("simulated write failure");
      },
    });
    const before = await snapshot(workspace);
    const archive = handMade({
      directories: ["a", "a/b"],
      files: [
        { path: "a/b/first.txt", data: bytes("written"), executable: false },
        // Stands for a failing disk: writing this file throws after the first one is on disk.
        { path: "a/second.txt", data: unreadable, executable: false },
      ],
    });
    const error = await writeArchive(archive, target).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(Error);
    expect(error).not.toBeInstanceOf(ArchiveError);
    expect((error as Error).message).toBe("simulated write failure");
    expect(await exists(target)).toBe(false);
    expect(await snapshot(workspace)).toEqual(before);
  });
});

// ---------------------------------------------------------------------------
// Property: whatever mix of tricky names and links, an archive is either
// refused or written entirely inside its target, links included.

function seededRandom(seed: number): () => number {
  // mulberry32: a tiny deterministic generator, so a failure can be replayed.
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

describe("property", () => {
  test("random archives of tricky names are refused or land entirely inside the target", async () => {
    const random = seededRandom(20261130);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
    // Mostly plain names, so that enough archives are accepted and written.
    const segments = ["a", "b", "c", "lib", "x.js", "a", "b", "lib", "..", ".", "", "escaped"];
    const randomPath = (allowAbsolute: boolean): string => {
      const parts = Array.from({ length: 1 + Math.floor(random() * 4) }, () => pick(segments));
      const prefix = pick(allowAbsolute ? ["", "", "", "./", "./", "../", "/", ".//"] : ["", "", "./"]);
      return prefix + parts.join("/");
    };
    let accepted = 0;
    let refused = 0;
    for (let round = 0; round < 500; round++) {
      const specs: Spec[] = Array.from({ length: 1 + Math.floor(random() * 5) }, () => {
        const kind = random();
        if (kind < 0.5) return file(randomPath(true), "data");
        if (kind < 0.65) return dir(`${randomPath(true)}/`);
        if (kind < 0.9) return link(randomPath(false), randomPath(true));
        return hardlink(randomPath(false), randomPath(true));
      });
      const roundTarget = join(workspace, `deploy-${round}`);
      const outsideBefore = await snapshot(join(workspace, "canary"));
      let archive: Archive;
      try {
        archive = await readArchive(await sourceOf(specs));
        await writeArchive(archive, roundTarget);
      } catch (error) {
        if (!(error instanceof ArchiveError)) throw error;
        refused++;
        expect(await exists(roundTarget)).toBe(false);
        continue;
      }
      accepted++;
      const root = await realpath(roundTarget);
      const onDisk = await snapshot(roundTarget);
      // Exactly what the archive describes, nothing more.
      expect(onDisk.length).toBe(archive.files.length + archive.directories.length + archive.symlinks.length);
      for (const { path } of archive.symlinks) {
        const resolved = await realpath(join(roundTarget, path)).catch(() => undefined);
        if (resolved !== undefined) expect(resolved === root || resolved.startsWith(root + sep)).toBe(true);
      }
      expect(await snapshot(join(workspace, "canary"))).toEqual(outsideBefore);
      expect((await readdir(workspace)).sort()).toEqual(["canary", `deploy-${round}`]);
      await rm(roundTarget, { recursive: true });
    }
    // Both outcomes are exercised; a generator that only made refusals would prove nothing.
    expect(accepted).toBeGreaterThan(20);
    expect(refused).toBeGreaterThan(20);
  });
});
