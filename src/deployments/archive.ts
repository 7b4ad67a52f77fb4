/**
 * Turns a deployment upload (`source`: base64 of a gzip'd tar, what
 * `libretto cloud deploy` sends) into files on disk.
 *
 * The upload is tenant code and must be treated as hostile. The work is split
 * in two so that nothing touches the disk before the whole archive is known to
 * be safe:
 *
 * - `readArchive` decodes, gunzips (with a hard output cap) and parses the tar
 *   in memory, refusing the whole upload with an `ArchiveError` on the first
 *   problem: bad encoding, sizes over the limits, unsafe names, unsupported
 *   entry types, links that leave the tree, paths that go through a link.
 * - `writeArchive` writes an accepted archive into a folder that it creates and
 *   that did not exist before: directories, then files (exclusive create, no
 *   symlink following), then symbolic links last, so no write can ever go
 *   through a link. On any failure the folder is removed.
 */
import { constants as fsConstants } from "node:fs";
import { chmod, mkdir, open, rm, symlink } from "node:fs/promises";
import { dirname, join, resolve, sep } from "node:path";
import { gunzip, type InputType, type ZlibOptions } from "node:zlib";
import { extract, type Header } from "tar-stream";

const KiB = 1024;
const MiB = 1024 * KiB;

export interface ArchiveLimits {
  /** Size of the gzip data once base64 is decoded. */
  maxUploadBytes: number;
  /** Sum of the sizes of all files written (hard-link copies included). */
  maxUnpackedBytes: number;
  /** Tar entries, and also distinct paths (directories implied by a file's name count too). */
  maxEntries: number;
}

/**
 * Why these numbers: a real one-workflow upload measured 251 KB of base64
 * (libretto 0.6.45), and one that also carries a `libretto/` copy is a few MB.
 * 50 MiB of gzip is two orders of magnitude above that and still a JSON body
 * (~67 MiB of base64) a server can hold. The archive is parsed in memory, so
 * 250 MiB unpacked bounds both the memory of one deploy and its disk use.
 * 20,000 entries covers a project with a vendored package tree, while bounding
 * the per-entry work (bookkeeping, one syscall or more per path).
 */
export const DEFAULT_ARCHIVE_LIMITS: Readonly<ArchiveLimits> = Object.freeze({
  maxUploadBytes: 50 * MiB,
  maxUnpackedBytes: 250 * MiB,
  maxEntries: 20_000,
});

/**
 * Tar bytes allowed per entry on top of file contents: a 512-byte header, up
 * to 511 bytes of padding, and a pax header (512 bytes plus records) for names
 * and link targets too long for the ustar fields (up to 1,000 bytes each here).
 */
const TAR_OVERHEAD_PER_ENTRY = 4 * KiB;
/** End-of-archive blocks and the padding of the last 10 KiB record, with room to spare. */
const TAR_OVERHEAD_FIXED = 64 * KiB;
/** zlib refuses larger `maxOutputLength` values (Bun: ERR_OUT_OF_RANGE at 2 GiB). */
const MAX_DECOMPRESSED_CAP = 2 ** 31 - 1;

const MAX_NAME_BYTES = 1000;
const MAX_SEGMENT_BYTES = 255;
/** How much of an entry name an error message quotes. */
const QUOTED_NAME_CHARS = 200;

/** What went wrong, for a caller that maps it to a status (e.g. 413 for the size ones). */
export type ArchiveErrorReason =
  | "invalid-encoding"
  | "upload-too-large"
  | "not-gzip"
  | "decompressed-too-large"
  | "not-tar"
  | "empty"
  | "too-many-entries"
  | "unpacked-too-large"
  | "unsafe-name"
  | "unsupported-type"
  | "unsafe-link"
  | "conflict";

/**
 * A refused upload. The message is written for the person deploying (it
 * becomes a 400 response): it names the problem and the entry, never file
 * contents, and entry names are escaped and truncated.
 */
export class ArchiveError extends Error {
  override readonly name = "ArchiveError";
  readonly reason: ArchiveErrorReason;

  constructor(reason: ArchiveErrorReason, message: string) {
    super(message);
    this.reason = reason;
  }
}

export interface ArchiveFile {
  /** Relative path inside the deployment, `/`-separated, no `./` prefix. */
  readonly path: string;
  readonly data: Uint8Array;
  /** Written as 0o755 when true, 0o644 otherwise. */
  readonly executable: boolean;
}

export interface ArchiveSymlink {
  readonly path: string;
  /** Relative target exactly as written in the archive, known to resolve inside the tree. */
  readonly target: string;
}

export type ArchiveEntryKind = "file" | "directory" | "symlink";

/** An upload that passed every check, held in memory until written. */
export interface Archive {
  /** In archive order; hard links appear as copies of the file they name. */
  readonly files: readonly ArchiveFile[];
  /** Every directory, explicit or implied by a name, parents before children. */
  readonly directories: readonly string[];
  readonly symlinks: readonly ArchiveSymlink[];
  /** Sum of `files[].data.byteLength`. */
  readonly totalBytes: number;
  /** What `path` is in the archive (a leading `./` is ignored), or undefined. */
  kindOf(path: string): ArchiveEntryKind | undefined;
  has(path: string): boolean;
  /** True for a regular file (a symlink to a file is not one: check the entry point with this). */
  isFile(path: string): boolean;
  file(path: string): ArchiveFile | undefined;
}

/**
 * Decodes and validates an upload. Refuses the whole archive with an
 * `ArchiveError` on the first problem; anything else thrown is a bug.
 */
export async function readArchive(
  sourceBase64: string,
  limits: ArchiveLimits = DEFAULT_ARCHIVE_LIMITS,
): Promise<Archive> {
  return readArchiveBytes(decodeUpload(sourceBase64, limits), limits);
}

/** The gzip bytes of an upload (base64 decoded), refused with an `ArchiveError` over the upload limit or not base64. */
export function decodeUpload(sourceBase64: string, limits: ArchiveLimits = DEFAULT_ARCHIVE_LIMITS): Uint8Array {
  checkLimits(limits);
  return decodeBase64(sourceBase64, limits);
}

/**
 * Validates an upload's gzip bytes exactly as `readArchive` does: how an
 * instance reads a deployment stored in the database before writing it to
 * its own disk (the bytes are tenant code, checked again on every instance).
 */
export async function readArchiveBytes(gzipped: Uint8Array, limits: ArchiveLimits = DEFAULT_ARCHIVE_LIMITS): Promise<Archive> {
  checkLimits(limits);
  if (gzipped.length > limits.maxUploadBytes) {
    throw new ArchiveError("upload-too-large", `The deployment source is ${formatBytes(gzipped.length)} of gzip data, over the ${formatBytes(limits.maxUploadBytes)} limit.`);
  }
  const tar = await gunzipCapped(gzipped, limits);
  return parseTar(tar, limits);
}

/**
 * Writes an archive into `targetDir`, which must not exist yet (its parent is
 * created if missing). Nothing is written outside `targetDir`; on any failure
 * `targetDir` is removed completely and the error is rethrown.
 */
export async function writeArchive(archive: Archive, targetDir: string): Promise<void> {
  // An Archive is a plain interface, so what is written is checked again here
  // (names, structure, link targets) rather than trusted to come from
  // readArchive; this is cheap next to the writes, and happens before any.
  const plan = planWrites(archive);
  const root = resolve(targetDir);
  await mkdir(dirname(root), { recursive: true });
  try {
    await mkdir(root, { mode: 0o755 });
  } catch (error) {
    if (isErrnoCode(error, "EEXIST")) {
      throw new Error(`writeArchive: ${root} already exists; each deployment needs a new folder.`);
    }
    throw error;
  }
  try {
    await chmod(root, 0o755);
    // Order is the safety argument: no symbolic link exists in `root` until
    // every directory and file is written, so neither mkdir nor open can be
    // redirected; O_EXCL and O_NOFOLLOW are a second line should that change.
    for (const directory of plan.directories) {
      const path = pathInside(root, directory);
      await mkdir(path, { mode: 0o755 });
      // Explicit modes, because mkdir and open are subject to the umask.
      await chmod(path, 0o755);
    }
    const flags =
      fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | (fsConstants.O_NOFOLLOW ?? 0);
    for (const file of plan.files) {
      const mode = file.executable ? 0o755 : 0o644;
      const handle = await open(pathInside(root, file.path), flags, mode);
      try {
        await handle.writeFile(file.data);
        await handle.chmod(mode);
      } finally {
        await handle.close();
      }
    }
    for (const link of plan.symlinks) {
      await symlink(link.target, pathInside(root, link.path));
    }
  } catch (error) {
    await rm(root, { recursive: true, force: true });
    throw error;
  }
}

/** The archive's entries with normalised paths, after the same checks readArchive makes (limits aside). */
function planWrites(archive: Archive): { directories: string[]; files: ArchiveFile[]; symlinks: ArchiveSymlink[] } {
  const tree = new PathTree(Number.POSITIVE_INFINITY);
  for (const directory of archive.directories) {
    const path = normalizeEntryName(directory, true);
    if (path !== "") tree.record(path, "directory");
  }
  const files = archive.files.map((file) => {
    const path = normalizeEntryName(file.path, false);
    tree.record(path, "file");
    return { path, data: file.data, executable: file.executable };
  });
  const symlinks = archive.symlinks.map((link) => {
    const path = normalizeEntryName(link.path, false);
    checkSymlinkTarget(path, link.target);
    tree.record(path, "symlink");
    return { path, target: link.target };
  });
  return { directories: tree.directories(), files, symlinks };
}

// ---------------------------------------------------------------------------
// Decoding

function checkLimits(limits: ArchiveLimits): void {
  for (const key of ["maxUploadBytes", "maxUnpackedBytes", "maxEntries"] as const) {
    const value = limits[key];
    if (!Number.isSafeInteger(value) || value <= 0) {
      throw new TypeError(`ArchiveLimits.${key} must be a positive integer, got ${String(value)}`);
    }
  }
  if (maxTarBytes(limits) > MAX_DECOMPRESSED_CAP) {
    throw new TypeError("ArchiveLimits allow more than 2 GiB of tar data; lower maxUnpackedBytes or maxEntries");
  }
}

/**
 * The most tar data an upload within `limits` can need: the gunzip output cap,
 * and so about the peak memory of one readArchive (file contents are views
 * into the tar, not copies). About 328 MiB with the defaults.
 */
export function maxTarBytes(limits: ArchiveLimits): number {
  return limits.maxUnpackedBytes + limits.maxEntries * TAR_OVERHEAD_PER_ENTRY + TAR_OVERHEAD_FIXED;
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

function decodeBase64(source: string, limits: ArchiveLimits): Uint8Array {
  if (typeof source !== "string" || source.length === 0) {
    throw new ArchiveError("invalid-encoding", "The deployment source is empty; send base64 of a .tar.gz file.");
  }
  // Size first, from the length alone, so a huge string is refused before any
  // scan or allocation.
  const padding = source.endsWith("==") ? 2 : source.endsWith("=") ? 1 : 0;
  const decodedBytes = Math.floor(source.length / 4) * 3 - padding;
  if (decodedBytes > limits.maxUploadBytes) {
    throw new ArchiveError(
      "upload-too-large",
      `The deployment source is ${formatBytes(decodedBytes)} of gzip data, over the ${formatBytes(limits.maxUploadBytes)} limit; leave build output and dependencies that are not needed out of the deployment.`,
    );
  }
  // Buffer.from(x, "base64") silently skips invalid characters, so a garbled
  // upload would decode to something; check the alphabet and length first.
  if (source.length % 4 !== 0 || !BASE64.test(source)) {
    throw new ArchiveError(
      "invalid-encoding",
      "The deployment source is not valid base64 (standard alphabet with padding, no spaces or line breaks); send the .tar.gz file encoded as base64.",
    );
  }
  return Buffer.from(source, "base64");
}

function gunzipAsync(input: InputType, options: ZlibOptions): Promise<Buffer> {
  return new Promise((resolvePromise, reject) => {
    gunzip(input, options, (error, result) => (error ? reject(error) : resolvePromise(result)));
  });
}

async function gunzipCapped(gzipped: Uint8Array, limits: ArchiveLimits): Promise<Uint8Array> {
  if (gzipped.length < 2 || gzipped[0] !== 0x1f || gzipped[1] !== 0x8b) {
    throw new ArchiveError(
      "not-gzip",
      "The deployment source is not gzip data; send a .tar.gz file (for example made with `tar czf`) encoded as base64.",
    );
  }
  const cap = maxTarBytes(limits);
  try {
    // The async form runs off the event loop; maxOutputLength makes zlib stop
    // (and allocate no more) once the cap is reached: a gzip bomb is refused
    // at the cap, whatever it claims to expand to.
    return await gunzipAsync(gzipped, { maxOutputLength: cap });
  } catch (error) {
    if (isErrnoCode(error, "ERR_BUFFER_TOO_LARGE")) {
      throw new ArchiveError(
        "decompressed-too-large",
        `The deployment source decompresses to more than ${formatBytes(cap)}, over the limit for a deployment (${formatBytes(limits.maxUnpackedBytes)} of files); deploy less, or check that the file is not corrupt.`,
      );
    }
    throw new ArchiveError(
      "not-gzip",
      "The deployment source is not valid gzip data (it is corrupt or truncated); send a complete .tar.gz file encoded as base64.",
    );
  }
}

// ---------------------------------------------------------------------------
// Tar parsing and validation

async function parseTar(tar: Uint8Array, limits: ArchiveLimits): Promise<Archive> {
  const builder = new ArchiveBuilder(limits);
  const entries = extract();
  entries.end(tar);
  try {
    for await (const entry of entries) {
      await builder.add(entry.header, entry);
    }
  } catch (error) {
    if (error instanceof ArchiveError) throw error;
    // tar-stream's own messages are about headers and truncation, never
    // contents; they are summarised rather than passed through.
    const truncated = error instanceof Error && /unexpected end/i.test(error.message);
    throw new ArchiveError(
      "not-tar",
      `The deployment source is gzip data but not a valid tar archive (${truncated ? "it ends in the middle of an entry" : "a header is corrupt"}); send a .tar.gz such as \`tar czf\` makes.`,
    );
  }
  return builder.finish();
}

type EntryType = NonNullable<Header["type"]> | "unknown";

const TYPE_NAMES: Record<EntryType, string> = {
  file: "a regular file",
  directory: "a directory",
  symlink: "a symbolic link",
  link: "a hard link",
  "character-device": "a character device",
  "block-device": "a block device",
  fifo: "a FIFO (named pipe)",
  "contiguous-file": "a contiguous file",
  unknown: "an entry of an unknown type",
};

class ArchiveBuilder {
  private readonly limits: ArchiveLimits;
  /** Distinct paths are bounded too: one entry's name can imply hundreds of directories. */
  private readonly tree: PathTree;
  private readonly files = new Map<string, ArchiveFile>();
  private readonly symlinks: ArchiveSymlink[] = [];
  private entriesSeen = 0;
  private totalBytes = 0;

  constructor(limits: ArchiveLimits) {
    this.limits = limits;
    this.tree = new PathTree(limits.maxEntries);
  }

  async add(header: Header, data: AsyncIterable<unknown>): Promise<void> {
    this.entriesSeen++;
    if (this.entriesSeen > this.limits.maxEntries) this.refuseEntryCount();

    const type: EntryType = header.type ?? "unknown";
    const rawName = header.name;
    if (type !== "file" && type !== "directory" && type !== "symlink" && type !== "link") {
      throw new ArchiveError(
        "unsupported-type",
        `The archive entry ${quoteName(rawName)} is ${TYPE_NAMES[type]}; only regular files, directories and symbolic links can be deployed.`,
      );
    }
    if (type !== "file" && header.size > 0) {
      // tar-stream would parse a directory's data as headers while GNU tar
      // skips it; refusing removes any chance of the two disagreeing.
      throw new ArchiveError(
        "not-tar",
        `The archive entry ${quoteName(rawName)} is ${TYPE_NAMES[type]} but carries ${header.size} bytes of data; the archive is malformed.`,
      );
    }

    const path = normalizeEntryName(rawName, type === "directory");
    if (path === "") {
      // The archive root: `tar czf x -C dir .` starts with "./".
      if (type === "directory") return;
      throw new ArchiveError(
        "unsafe-name",
        `The archive entry ${quoteName(rawName)} names the root of the archive but is ${TYPE_NAMES[type]}; the root can only be a directory.`,
      );
    }

    switch (type) {
      case "directory":
        this.tree.record(path, "directory");
        return;
      case "symlink":
        checkSymlinkTarget(path, header.linkname ?? "");
        this.tree.record(path, "symlink");
        this.symlinks.push({ path, target: header.linkname ?? "" });
        return;
      case "link":
        this.addHardLink(path, header.linkname ?? "");
        return;
      case "file":
        await this.addFile(path, header, data);
        return;
    }
  }

  finish(): Archive {
    if (this.files.size === 0) {
      throw new ArchiveError(
        "empty",
        "The archive holds no files; deploy the built project folder (with package.json and the entry point).",
      );
    }
    return new ArchiveContents(this.files, this.tree.directories(), this.symlinks, this.totalBytes, this.tree);
  }

  private async addFile(path: string, header: Header, data: AsyncIterable<unknown>): Promise<void> {
    const declared = header.size;
    // Checked on the header, before any of the data is buffered.
    this.reserveBytes(path, declared);
    this.tree.record(path, "file");
    const chunks: Uint8Array[] = [];
    let received = 0;
    for await (const chunk of data) {
      const bytes = chunk as Uint8Array;
      received += bytes.byteLength;
      if (received > declared) break;
      chunks.push(bytes);
    }
    if (received !== declared) {
      throw new ArchiveError(
        "not-tar",
        `The archive entry ${quoteName(path)} declares ${declared} bytes but holds ${received}; the archive is corrupt.`,
      );
    }
    // One chunk is the common case (the whole tar is one buffer): keep a view
    // instead of copying.
    const joined = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
    this.files.set(path, { path, data: joined, executable: (header.mode & 0o111) !== 0 });
  }

  private addHardLink(path: string, rawTarget: string): void {
    let target: string;
    try {
      target = normalizeEntryName(rawTarget, false);
    } catch {
      target = "";
    }
    const original = target === "" ? undefined : this.files.get(target);
    if (original === undefined) {
      throw new ArchiveError(
        "unsafe-link",
        `The hard link ${quoteName(path)} points to ${quoteName(rawTarget)}, which is not a regular file earlier in the archive; hard links can only repeat a file already in the archive.`,
      );
    }
    this.reserveBytes(path, original.data.byteLength);
    this.tree.record(path, "file");
    // Written as a copy: a real hard link would share the inode (and later
    // writes) between two paths for no benefit.
    this.files.set(path, { path, data: original.data, executable: original.executable });
  }

  private reserveBytes(path: string, bytes: number): void {
    if (this.totalBytes + bytes > this.limits.maxUnpackedBytes) {
      throw new ArchiveError(
        "unpacked-too-large",
        `The archive unpacks to more than ${formatBytes(this.limits.maxUnpackedBytes)} (reached at ${quoteName(path)}); leave build output and dependencies that are not needed out of the deployment.`,
      );
    }
    this.totalBytes += bytes;
  }

  private refuseEntryCount(): never {
    throw tooManyEntries(this.limits.maxEntries);
  }
}

function tooManyEntries(maxEntries: number): ArchiveError {
  return new ArchiveError(
    "too-many-entries",
    `The archive has more than ${maxEntries} entries (files, directories and links, including directories implied by names); deploy fewer files.`,
  );
}

/**
 * The shape of the tree being built: every path seen, explicit or implied.
 * Invariant: every proper prefix of a recorded path is recorded as a
 * directory. So a new path's prefixes can be checked from the longest down,
 * stopping at the first one already known, which keeps the work linear in the
 * total length of new paths (a name can imply hundreds of directories).
 */
class PathTree {
  private readonly kinds = new Map<string, ArchiveEntryKind>();

  constructor(private readonly maxPaths: number) {}

  kindOf(path: string): ArchiveEntryKind | undefined {
    return this.kinds.get(path);
  }

  /** Every directory, parents first: Map order is insertion order, and parents are always recorded first. */
  directories(): string[] {
    const result: string[] = [];
    for (const [path, kind] of this.kinds) if (kind === "directory") result.push(path);
    return result;
  }

  /**
   * Records a path and the directories its name implies. Refuses a path that
   * goes through a symbolic link or a file, and any path seen twice unless both
   * are directories: `tar czf` never writes a path twice, and "the last one
   * wins" (what tar does on extraction) would make what the archive contains
   * depend on order, so a duplicate is refused rather than replaced.
   */
  record(path: string, kind: ArchiveEntryKind): void {
    const existing = this.kinds.get(path);
    if (existing !== undefined) {
      if (existing === "directory" && kind === "directory") return;
      throw new ArchiveError(
        "conflict",
        existing === kind
          ? `The archive entry ${quoteName(path)} appears twice; each path can appear only once.`
          : `The archive entry ${quoteName(path)} appears twice, as ${kindName(existing)} and as ${kindName(kind)}.`,
      );
    }
    const missing: string[] = [];
    for (let slash = path.lastIndexOf("/"); slash > 0; slash = path.lastIndexOf("/", slash - 1)) {
      const parent = path.slice(0, slash);
      const parentKind = this.kinds.get(parent);
      if (parentKind === "directory") break;
      if (parentKind !== undefined) {
        throw new ArchiveError(
          "conflict",
          parentKind === "symlink"
            ? `The archive entry ${quoteName(path)} goes through the symbolic link ${quoteName(parent)}; entries cannot be placed inside a link.`
            : `The archive entry ${quoteName(path)} is inside ${quoteName(parent)}, which is a file, not a directory.`,
        );
      }
      missing.push(parent);
    }
    if (this.kinds.size + missing.length + 1 > this.maxPaths) throw tooManyEntries(this.maxPaths);
    for (let i = missing.length - 1; i >= 0; i--) this.kinds.set(missing[i]!, "directory");
    this.kinds.set(path, kind);
  }
}

class ArchiveContents implements Archive {
  readonly files: readonly ArchiveFile[];

  constructor(
    private readonly filesByPath: ReadonlyMap<string, ArchiveFile>,
    readonly directories: readonly string[],
    readonly symlinks: readonly ArchiveSymlink[],
    readonly totalBytes: number,
    private readonly tree: PathTree,
  ) {
    this.files = [...filesByPath.values()];
  }

  kindOf(path: string): ArchiveEntryKind | undefined {
    return this.tree.kindOf(stripDotSlash(path));
  }

  has(path: string): boolean {
    return this.kindOf(path) !== undefined;
  }

  isFile(path: string): boolean {
    return this.kindOf(path) === "file";
  }

  file(path: string): ArchiveFile | undefined {
    return this.filesByPath.get(stripDotSlash(path));
  }
}

// ---------------------------------------------------------------------------
// Names and link targets

/** C0 and C1 controls (NUL, newline, escape, ...) and DEL. */
const CONTROL_CHARACTER = /[\u0000-\u001f\u007f-\u009f]/;
const DRIVE_LETTER = /^[A-Za-z]:/;

function stripDotSlash(name: string): string {
  let result = name;
  while (result.startsWith("./")) result = result.slice(2);
  return result === "." ? "" : result;
}

/**
 * Returns the entry's path relative to the archive root ("" for the root
 * itself), or refuses it. Deliberately stricter than "normalise and check":
 * tar never writes `a//b` or `a/./b`, so such names are refused rather than
 * interpreted.
 */
function normalizeEntryName(raw: string, isDirectory: boolean): string {
  checkNameCharacters(raw, raw, "name");
  let name = stripDotSlash(raw);
  if (isDirectory && name.endsWith("/")) name = name.slice(0, -1);
  if (name === "") return "";
  if (name.startsWith("/")) {
    throw unsafeName(raw, "is an absolute path; entries must be relative to the deployment folder");
  }
  if (DRIVE_LETTER.test(name)) {
    throw unsafeName(raw, "starts with a drive letter; entries must be relative to the deployment folder");
  }
  for (const segment of name.split("/")) {
    if (segment === "..") throw unsafeName(raw, 'has a ".." segment; entries must stay inside the deployment folder');
    if (segment === "" || segment === ".") {
      throw unsafeName(raw, 'has an empty or "." segment; write names without "//" or "/./"');
    }
    if (Buffer.byteLength(segment) > MAX_SEGMENT_BYTES) {
      throw unsafeName(raw, `has a path segment over ${MAX_SEGMENT_BYTES} bytes`);
    }
  }
  return name;
}

function checkNameCharacters(raw: string, entry: string, what: "name" | "link target"): void {
  const refuse = (problem: string) =>
    what === "name"
      ? unsafeName(raw, problem)
      : new ArchiveError("unsafe-link", `The symbolic link ${quoteName(entry)} has a target that ${problem}.`);
  if (CONTROL_CHARACTER.test(raw)) throw refuse("contains a control character (such as NUL or a line break)");
  if (raw.includes("\\")) throw refuse("contains a backslash; use / to separate directories");
  // tar-stream decodes bytes that are not UTF-8 to U+FFFD, so such a name
  // would be written under a different name than the archive holds.
  if (raw.includes("\uFFFD")) throw refuse("is not valid UTF-8");
  if (Buffer.byteLength(raw) > MAX_NAME_BYTES) throw refuse(`is longer than ${MAX_NAME_BYTES} bytes`);
}

function unsafeName(raw: string, problem: string): ArchiveError {
  return new ArchiveError("unsafe-name", `The archive entry ${quoteName(raw)} ${problem}.`);
}

/**
 * Refuses a symbolic link unless its target provably resolves inside the tree.
 * The rule: a relative target whose ".." segments all come first, no more of
 * them than the link's depth. The link's own parents are real directories
 * (nothing can be placed inside a link), so the leading ".." land on a real
 * directory inside the tree; after that the target only descends, and every
 * link it may descend through obeys the same rule. A ".." after a name is
 * refused because lexical resolution cannot be trusted there: with `d/l -> ..`,
 * `d/l/../..` looks like the root but is the root's parent.
 */
function checkSymlinkTarget(path: string, target: string): void {
  const refuse = (problem: string) =>
    new ArchiveError("unsafe-link", `The symbolic link ${quoteName(path)} points to ${quoteName(target)}, ${problem}.`);
  if (target === "") throw refuse("an empty target");
  checkNameCharacters(target, path, "link target");
  if (target.startsWith("/") || DRIVE_LETTER.test(target)) {
    throw refuse("an absolute path; links must be relative and stay inside the deployment");
  }
  const segments = (target.endsWith("/") ? target.slice(0, -1) : target).split("/");
  let climbs = 0;
  let descended = false;
  for (const segment of segments) {
    if (segment === ".") continue;
    if (segment === "") throw refuse('which has an empty segment ("//")');
    if (segment === "..") {
      if (descended) {
        throw refuse('which goes back up with ".." after a directory name; put all ".." segments first');
      }
      climbs++;
      continue;
    }
    if (Buffer.byteLength(segment) > MAX_SEGMENT_BYTES) {
      throw refuse(`which has a path segment over ${MAX_SEGMENT_BYTES} bytes`);
    }
    descended = true;
  }
  const depth = path.split("/").length - 1;
  if (climbs > depth) throw refuse("which is outside the archive; links must stay inside the deployment");
}

/** Joins a relative archive path to `root`, refusing anything that would land outside it. */
function pathInside(root: string, relative: string): string {
  const normalized = normalizeEntryName(relative, false);
  const path = join(root, ...normalized.split("/"));
  if (normalized === "" || !path.startsWith(root + sep)) {
    throw new ArchiveError("unsafe-name", `The archive entry ${quoteName(relative)} does not name a path inside the deployment.`);
  }
  return path;
}

// ---------------------------------------------------------------------------
// Messages

/** Characters escaped when quoting a name: controls, invisible and bidi overrides, and the quoting itself. */
const ESCAPED_IN_QUOTES = /[\u0000-\u001f\u007f-\u009f\u00ad\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff"\\]/g;

/** A name safe to put in a message: escaped, quoted, and truncated to about 200 characters. */
export function quoteName(name: string): string {
  const characters = Array.from(name);
  const shown = characters.length > QUOTED_NAME_CHARS ? characters.slice(0, QUOTED_NAME_CHARS).join("") : name;
  const escaped = shown.replace(ESCAPED_IN_QUOTES, (character) =>
    character === '"' || character === "\\"
      ? `\\${character}`
      : `\\u${character.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
  const more = characters.length - QUOTED_NAME_CHARS;
  return more > 0 ? `"${escaped}..." (${more} more characters)` : `"${escaped}"`;
}

function kindName(kind: ArchiveEntryKind): string {
  return kind === "file" ? "a file" : kind === "directory" ? "a directory" : "a symbolic link";
}

function formatBytes(bytes: number): string {
  if (bytes >= MiB) return `${Number((bytes / MiB).toFixed(1))} MiB`;
  if (bytes >= KiB) return `${Number((bytes / KiB).toFixed(1))} KiB`;
  return `${bytes} bytes`;
}

function isErrnoCode(error: unknown, code: string): boolean {
  return typeof error === "object" && error !== null && (error as { code?: unknown }).code === code;
}
