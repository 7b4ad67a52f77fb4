import { createHash } from "node:crypto";
import { gzipSync } from "node:zlib";
import { pack, type Header } from "tar-stream";

/**
 * Builds a deployment upload shaped like what `libretto cloud deploy` sends
 * (API.md "Deployments"): a gzip'd tar, base64, holding
 *
 * - `package.json` with `libretto`, `playwright` and `playwright-core` (plus
 *   any `externals`) as dependencies;
 * - `index.js`: an ES module that embeds the bundled implementation (CommonJS,
 *   gzip + base64), writes it to the temp directory on first use and loads it
 *   with a require that falls back to the deployment folder for bare names,
 *   and exports one branded proxy per workflow whose `run` loads the
 *   implementation and calls the real workflow's `run`;
 * - `.libretto-workflows.json` with each workflow's metadata (credential
 *   names, input schema as JSON Schema);
 * - the "user's sources" under `.libretto-share/source/`.
 *
 * The implementation stands in for libretto's bundle: its `workflow()` brands
 * the object, and its `run(ctx, input)` strips `__libretto`, keeps only the
 * declared credentials and calls the handler; it requires "playwright" at
 * load, as the real bundle does.
 */
export interface UploadWorkflow {
  name: string;
  credentials?: string[];
  /** The handler's body: `async (ctx, input) => { BODY }`, with `ctx` and `input` in scope. */
  body: string;
  inputSchema?: unknown;
  /** As libretto's deploy records it: authProfileName / authProfileRefresh in the metadata and on the export. */
  authProfile?: { name: string; refresh?: boolean };
}

const authProfileFields = (w: UploadWorkflow) =>
  w.authProfile ? { authProfileName: w.authProfile.name, ...(w.authProfile.refresh === undefined ? {} : { authProfileRefresh: w.authProfile.refresh }) } : {};

export interface UploadOptions {
  workflows: UploadWorkflow[];
  /** Extra top-level code of the implementation (runs when the first job loads it). */
  implementationPrelude?: string;
  /** Extra top-level code of index.js (runs when the deployment is loaded at build time). */
  entryPrelude?: string;
  /** Dependencies beyond libretto and playwright, as package.json lists them. */
  externals?: Record<string, string>;
  /** More files, by path. */
  files?: Record<string, string>;
  /** Leave .libretto-workflows.json out. */
  noMetadata?: boolean;
}

export function implementationSource(options: UploadOptions): string {
  const exports = options.workflows
    .map(
      (w, i) =>
        `exports.w${i} = workflow(${JSON.stringify(w.name)}, { credentials: ${JSON.stringify(w.credentials ?? [])}, handler: async (ctx, input) => { ${w.body} } });`,
    )
    .join("\n");
  return `"use strict";
const BRAND = Symbol.for("libretto.workflow");
const playwright = require("playwright");
if (typeof playwright.chromium !== "object") throw new Error("playwright did not load");
let pnp; try { pnp = require("pnpapi"); } catch { pnp = undefined; }
${options.implementationPrelude ?? ""}
function workflow(name, definition) {
  const declared = (definition.credentials || []).map((c) => c.trim().toLowerCase());
  return {
    [BRAND]: true,
    name,
    credentialNames: declared,
    async run(ctx, input) {
      const { __libretto, credentials, ...rest } = input || {};
      const kept = {};
      for (const n of declared) if (credentials && typeof credentials[n] === "string") kept[n] = credentials[n];
      const merged = Object.keys(kept).length > 0 ? { ...rest, credentials: kept } : rest;
      return definition.handler(ctx, merged);
    },
  };
}
${exports}
`;
}

export function bootstrapSource(options: UploadOptions): string {
  const source = implementationSource(options);
  const bundle = gzipSync(Buffer.from(source)).toString("base64");
  const hash = createHash("sha256").update(source).digest("hex").slice(0, 16);
  const proxies = options.workflows
    .map((w, i) => `export const workflow_${i} = proxy(${JSON.stringify(w.name)}, ${JSON.stringify({ credentialNames: w.credentials ?? [], ...authProfileFields(w) })});`)
    .join("\n");
  return `import { createRequire, Module } from "node:module";
import { existsSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
${options.entryPrelude ?? ""}
const BRAND = Symbol.for("libretto.workflow");
const BUNDLE = ${JSON.stringify(bundle)};
const HASH = ${JSON.stringify(hash)};
const fromHere = createRequire(import.meta.url);
let loaded;
function implementation() {
  if (loaded) return loaded;
  const file = join(tmpdir(), "test-deploy-" + HASH + ".cjs");
  if (!existsSync(file)) writeFileSync(file, gunzipSync(Buffer.from(BUNDLE, "base64")));
  const original = Module.prototype.require;
  // A bare name the bundle cannot find is looked up from the deployment
  // folder, with the original require back in place meanwhile (else the
  // fallback would come back here).
  function fallback(id) {
    try { return original.call(this, id); }
    catch (error) {
      if (!(error && error.code === "MODULE_NOT_FOUND") || id.startsWith(".") || id.startsWith("/") || id.startsWith("node:")) throw error;
      Module.prototype.require = original;
      try { return fromHere(id); } finally { Module.prototype.require = fallback; }
    }
  }
  Module.prototype.require = fallback;
  try { loaded = createRequire(join(tmpdir(), "boot.cjs"))(file); } finally { Module.prototype.require = original; }
  return loaded;
}
function proxy(name, metadata) {
  return {
    [BRAND]: true,
    name,
    credentialNames: metadata.credentialNames,
    authProfileName: metadata.authProfileName,
    authProfileRefresh: metadata.authProfileRefresh,
    async run(ctx, input) {
      const target = Object.values(implementation()).find((w) => w && w[BRAND] && w.name === name);
      if (!target) throw new Error("workflow " + name + " is missing from the bundle");
      return target.run(ctx, input);
    },
  };
}
${proxies}
`;
}

/** The upload's files, by path (without the leading "./"). */
export function uploadFiles(options: UploadOptions): Record<string, string> {
  const files: Record<string, string> = {
    "package.json": JSON.stringify(
      {
        name: "deploy-test",
        private: true,
        type: "module",
        dependencies: { libretto: "^0.6.45", playwright: "^1.58.0", "playwright-core": "^1.58.0", ...options.externals },
      },
      null,
      2,
    ),
    "index.js": bootstrapSource(options),
    ".libretto-share/source/src/workflows.ts": `// the user's sources (shared, never run)\n${options.workflows.map((w) => `// ${w.name}`).join("\n")}\n`,
    ...options.files,
  };
  if (!options.noMetadata) {
    files[".libretto-workflows.json"] = JSON.stringify({
      workflows: options.workflows.map((w) => ({
        name: w.name,
        credentialNames: w.credentials ?? [],
        ...(w.inputSchema ? { inputSchema: w.inputSchema } : {}),
        ...authProfileFields(w),
        sourceFile: "src/workflows.ts",
      })),
    });
  }
  return files;
}

export interface RawEntry {
  header: Partial<Header> & { name: string };
  content?: string | Buffer;
}

/** A gzip'd tar of raw entries (for hostile uploads), base64. */
export async function tarBase64(entries: RawEntry[]): Promise<string> {
  const archive = pack();
  const chunks: Buffer[] = [];
  const done = new Promise<void>((resolve, reject) => {
    archive.on("data", (chunk) => chunks.push(chunk as Buffer));
    archive.on("end", () => resolve());
    archive.on("error", reject);
  });
  for (const entry of entries) {
    await new Promise<void>((resolve, reject) =>
      archive.entry(entry.header as Header, entry.content ?? "", (error) => (error ? reject(error) : resolve())),
    );
  }
  archive.finalize();
  await done;
  return gzipSync(Buffer.concat(chunks)).toString("base64");
}

/** An upload as `tar czf x -C dir .` makes it: "./" first, directories, then files. */
export async function uploadBase64(options: UploadOptions): Promise<string> {
  const files = uploadFiles(options);
  const dirs = new Set<string>();
  for (const path of Object.keys(files)) {
    const parts = path.split("/");
    for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join("/"));
  }
  const entries: RawEntry[] = [{ header: { name: "./", type: "directory", mode: 0o755 } }];
  for (const dir of [...dirs].sort()) entries.push({ header: { name: `./${dir}/`, type: "directory", mode: 0o755 } });
  for (const [path, content] of Object.entries(files)) entries.push({ header: { name: `./${path}`, type: "file", mode: 0o644 }, content });
  return tarBase64(entries);
}
