import { createHash, randomUUID } from "node:crypto";
import { existsSync, lstatSync, mkdirSync, readFileSync, symlinkSync } from "node:fs";
import { rename, rm } from "node:fs/promises";
import { join, posix } from "node:path";
import { z } from "zod";
import type { Clock, IdSource } from "../clock";
import { AppError } from "../errors";
import type { Logger } from "../log";
import type { Db } from "../store/database";
import { lockTenant } from "../store/locks";
import { isPostgres } from "../store/postgres";
import type { DiscoveredWorkflow } from "../worker/protocol";
import { ArchiveError, decodeUpload, quoteName, readArchiveBytes, writeArchive, type Archive, type ArchiveLimits } from "./archive";
import * as store from "./store";

/** Packages Understudy answers itself (playwright) or that libretto's deploy bundles; never required in the upload. */
const PROVIDED_PACKAGES = new Set(["libretto", "playwright", "playwright-core", "chromium-bidi"]);
const METADATA_FILE = ".libretto-workflows.json";
/** An npm package name (so a dependency name is never a path). */
const PACKAGE_NAME = /^(@[a-z0-9-~][a-z0-9-._~]*\/)?[a-z0-9-~][a-z0-9-._~]*$/;
/** How long loading a deployment's entry module may take. */
const DISCOVER_TIMEOUT_MS = 60_000;
/** Largest JSON Schema kept per workflow (from the upload's metadata). */
const MAX_SCHEMA_BYTES = 256 * 1024;
/**
 * A replaced deployment's stored upload is kept this long after its
 * replacement got ready: a job created in that instant (its transaction read
 * the old version) has committed by then, so pruning sees it.
 */
const PRUNE_GRACE_MS = 60_000;

export interface DeploymentsDeps {
  db: Db;
  clock: Clock;
  newId: IdSource;
  log: Logger;
  /** The deployments directory: <dir>/<tenant id>/<deployment id>/ holds each upload. */
  dir: string;
  limits: ArchiveLimits;
  /** How long a build is held by its instance without renewal: past it, another instance takes the build over. */
  buildLeaseMs: number;
  /** Loads a deployment's entry module in a worker of the tenant and lists its workflows. */
  discover(tenantId: string, dir: string, entry: string, timeoutMs: number): Promise<DiscoveredWorkflow[]>;
}

export interface DeploymentView {
  deployment_id: string;
  status: store.DeploymentStatus;
  workflows?: string[];
  build_error?: string;
  deployment_version: number;
  entry_point: string;
  description: string | null;
  auto_repair: boolean;
  created_at: string;
  updated_at: string;
}

export const deploymentDir = (root: string, tenantId: string, id: string) => join(root, tenantId, id);
export const tenantDeploymentsDir = (root: string, tenantId: string) => join(root, tenantId);

/**
 * Tenants' uploaded workflow code: `libretto cloud deploy`'s tar is checked
 * and unpacked while the request waits (a bad upload is a 400 and writes
 * nothing), then built in the background: the entry module is loaded in a
 * worker of the tenant to discover its workflows, and the deployment becomes
 * `ready` with their names, or `failed` with an error a person can act on.
 *
 * The upload itself is stored in the database, and each instance unpacks a
 * deployment into its own deployments directory the first time it needs it
 * (`materialise`): with several instances behind a load balancer, the one
 * that took the upload is rarely the one that claims its jobs. A build is
 * held by one instance under a lease it renews; when that instance dies, any
 * other takes the build over once the lease lapses.
 *
 * Builds run one at a time: a build holds an upload's worth of memory.
 */
export class Deployments {
  readonly #deps: DeploymentsDeps;
  #builds: Promise<void> = Promise.resolve();
  #pending = 0;
  /** One unpack at a time too: an upload can take a few hundred MB while it is read. */
  #unpacking: Promise<unknown> = Promise.resolve();
  /** Set at shutdown: a build cut short by it stays `building` and is built again at the next start. */
  #stopping = false;
  /** Unpacks in progress on this instance, by deployment id: concurrent first uses share one. */
  readonly #materialising = new Map<string, Promise<string>>();
  /** Builds this instance holds (leased) and has queued or is running. */
  readonly #held = new Set<string>();
  #sweeper: ReturnType<typeof setInterval> | undefined;

  constructor(deps: DeploymentsDeps) {
    this.#deps = deps;
  }

  get dir(): string {
    return this.#deps.dir;
  }

  async create(
    tenantId: string,
    input: { source: string; entry_point: string; description?: string; auto_repair?: boolean },
  ): Promise<DeploymentView> {
    const { db, clock, newId, log } = this.#deps;
    const entry = normalizeEntryPoint(input.entry_point);
    const unpacked = this.#unpacking.then(() => this.#unpack(input.source, entry));
    this.#unpacking = unpacked.catch(() => {});
    const { archive, gzipped } = await unpacked;
    const id = newId();
    const now = clock.now();
    const at = now.toISOString();
    const row = await db.transaction().execute(async (trx) => {
      // Versions count up per tenant (max + 1): two deploys at once take turns
      // for their number instead of colliding on it.
      await lockTenant(trx, tenantId);
      const row: store.DeploymentRow = {
        id,
        tenant_id: tenantId,
        version: await store.nextDeploymentVersion(trx, tenantId),
        status: "building",
        entry_point: entry,
        description: input.description ?? null,
        auto_repair: input.auto_repair ? 1 : 0,
        build_error: null,
        upload_bytes: gzipped.length,
        unpacked_bytes: archive.totalBytes,
        created_at: at,
        updated_at: at,
        ready_at: null,
        // This instance builds it: held from the start, so no other instance takes it over meanwhile.
        build_lease_until: this.#leaseUntil(now),
      };
      await store.insertDeployment(trx, row);
      await store.insertArchive(trx, {
        deployment_id: id,
        tenant_id: tenantId,
        sha256: sha256Hex(gzipped),
        size_bytes: gzipped.length,
        bytes: gzipped,
        created_at: at,
      });
      return row;
    });
    this.#held.add(id);
    try {
      await this.#writeLocal(archive, tenantId, id);
    } catch (error) {
      this.#held.delete(id);
      log.log("error", "could not write a deployment to disk", { deployment_id: id, error: error instanceof Error ? error.message : "error" });
      await this.#fail(id, "The server could not write the upload to disk; the server log has the detail. Deploy again.");
      return this.view((await store.findDeploymentById(db, id))!);
    }
    log.log("info", "deployment uploaded", { deployment_id: id, tenant_id: tenantId, version: row.version, files: archive.files.length, bytes: archive.totalBytes });
    this.build(id);
    return this.view(row);
  }

  /**
   * At start: builds (again) the deployments left `building` by an instance
   * that is gone. With SQLite this process is the only instance, so every one
   * of them is; with PostgreSQL only those whose holder's lease lapsed (the
   * others are being built by live instances). Then keeps looking, for builds
   * orphaned by an instance that dies later, and prunes stored uploads that
   * nothing can run any more.
   */
  async resumeInterrupted(): Promise<void> {
    await this.#takeOverOrphans(!isPostgres(this.#deps.db));
    const every = Math.max(1000, Math.floor(this.#deps.buildLeaseMs / 2));
    this.#sweeper ??= setInterval(() => void this.#sweep(), every);
    this.#sweeper.unref?.();
  }

  async #sweep(): Promise<void> {
    try {
      await this.#takeOverOrphans(false);
      const cutoff = new Date(this.#deps.clock.now().getTime() - PRUNE_GRACE_MS).toISOString();
      const pruned = await store.pruneArchives(this.#deps.db, cutoff);
      if (pruned.length > 0) this.#deps.log.log("info", "stored deployment uploads pruned", { deployments: pruned.length });
    } catch (error) {
      this.#deps.log.log("warn", "deployment sweep failed; it runs again shortly", { error: error instanceof Error ? error.message : "error" });
    }
  }

  async #takeOverOrphans(force: boolean): Promise<void> {
    if (this.#stopping) return;
    const now = this.#deps.clock.now();
    for (const row of await store.orphanedBuilds(this.#deps.db, force ? undefined : now.toISOString())) {
      if (this.#held.has(row.id)) continue;
      if (!(await store.claimBuild(this.#deps.db, row.id, now.toISOString(), this.#leaseUntil(now), force))) continue;
      this.#deps.log.log("info", "deployment build taken over", { deployment_id: row.id });
      this.#held.add(row.id);
      this.build(row.id);
    }
  }

  #leaseUntil(now: Date): string {
    return new Date(now.getTime() + this.#deps.buildLeaseMs).toISOString();
  }

  /**
   * The deployment's folder on this instance, unpacked from the stored upload
   * on first use (its hash checked, then every check of an upload made
   * again). Concurrent first uses on this instance share one unpack; an
   * unpack is written aside and renamed into place, so a folder that exists
   * is complete. Throws a DeploymentUnavailableError, whose message is for
   * the tenant, when it cannot be had.
   */
  async materialise(tenantId: string, deploymentId: string): Promise<string> {
    const dir = deploymentDir(this.#deps.dir, tenantId, deploymentId);
    if (existsSync(dir)) return dir;
    let pending = this.#materialising.get(deploymentId);
    if (!pending) {
      pending = this.#unpacking.then(() => this.#unpackStored(tenantId, deploymentId, dir));
      this.#unpacking = pending.catch(() => {});
      this.#materialising.set(deploymentId, pending);
      void pending.catch(() => {}).finally(() => this.#materialising.delete(deploymentId));
    }
    return pending;
  }

  async #unpackStored(tenantId: string, deploymentId: string, dir: string): Promise<string> {
    if (existsSync(dir)) return dir;
    const stored = await store.findArchive(this.#deps.db, tenantId, deploymentId);
    if (!stored) {
      throw new DeploymentUnavailableError(
        `Deployment ${deploymentId}'s upload is no longer stored on this server (it was replaced by a newer deployment, or uploaded before uploads were kept in the database). Deploy again.`,
      );
    }
    const bytes = stored.bytes instanceof Uint8Array ? stored.bytes : new Uint8Array(stored.bytes);
    if (sha256Hex(bytes) !== stored.sha256) {
      this.#deps.log.log("error", "a stored deployment upload failed its integrity check", { deployment_id: deploymentId });
      throw new DeploymentUnavailableError(`Deployment ${deploymentId}'s stored upload failed its integrity check. Deploy again.`);
    }
    let archive: Archive;
    try {
      archive = await readArchiveBytes(bytes, this.#deps.limits);
    } catch (error) {
      if (!(error instanceof ArchiveError)) throw error;
      throw new DeploymentUnavailableError(`Deployment ${deploymentId}'s upload is refused by this server: ${error.message}`);
    }
    await this.#writeLocal(archive, tenantId, deploymentId);
    this.#deps.log.log("info", "deployment unpacked from the database", { deployment_id: deploymentId, files: archive.files.length, bytes: archive.totalBytes });
    return dir;
  }

  /**
   * Writes an archive as the deployment's folder: into a fresh folder beside
   * it first, renamed into place, so a half-written folder never has the
   * deployment's name (a crash leaves only a `.partial-` folder, never used).
   */
  async #writeLocal(archive: Archive, tenantId: string, id: string): Promise<void> {
    // The tenant's folder is what its deployments workers see (read-only): made before its first worker starts.
    const tenantDir = tenantDeploymentsDir(this.#deps.dir, tenantId);
    mkdirSync(tenantDir, { recursive: true, mode: 0o700 });
    const partial = join(tenantDir, `.partial-${id}-${randomUUID()}`);
    await writeArchive(archive, partial);
    try {
      await rename(partial, deploymentDir(this.#deps.dir, tenantId, id));
    } catch (error) {
      await rm(partial, { recursive: true, force: true });
      // Another process sharing this directory wrote it first: the same bytes.
      if (!existsSync(deploymentDir(this.#deps.dir, tenantId, id))) throw error;
    }
  }

  /** Queues a build this instance holds; builds run one at a time. */
  build(id: string): void {
    this.#pending += 1;
    this.#builds = this.#builds
      .then(() => this.#build(id))
      .catch((error) => this.#deps.log.log("error", "deployment build crashed", { deployment_id: id, error: error instanceof Error ? error.message : "error" }))
      .finally(() => (this.#pending -= 1));
  }

  /** The server is stopping: builds still queued wait for the next start. */
  stop(): void {
    this.#stopping = true;
    if (this.#sweeper) clearInterval(this.#sweeper);
  }

  /** Resolves when no build is queued or running (shutdown, tests). */
  async idle(): Promise<void> {
    while (this.#pending > 0) await this.#builds;
  }

  async get(tenantId: string, id: string): Promise<DeploymentView> {
    const row = await store.findDeployment(this.#deps.db, tenantId, id);
    if (!row) throw deploymentNotFound(id);
    return this.view(row);
  }

  async list(tenantId: string, limit: number, before?: number): Promise<{ deployments: DeploymentView[]; next: number | null }> {
    const rows = await store.listDeployments(this.#deps.db, tenantId, limit + 1, before);
    const page = rows.slice(0, limit);
    const names = await store.workflowsOfDeployments(this.#deps.db, page.filter((r) => r.status === "ready").map((r) => r.id));
    return {
      deployments: page.map((row) => this.#viewWith(row, names.filter((w) => w.deployment_id === row.id).map((w) => w.name))),
      next: rows.length > limit ? page[page.length - 1]!.version : null,
    };
  }

  async view(row: store.DeploymentRow): Promise<DeploymentView> {
    const names = row.status === "ready" ? (await store.workflowsOfDeployment(this.#deps.db, row.id)).map((w) => w.name) : [];
    return this.#viewWith(row, names);
  }

  #viewWith(row: store.DeploymentRow, names: string[]): DeploymentView {
    return {
      deployment_id: row.id,
      status: row.status as store.DeploymentStatus,
      ...(row.status === "ready" ? { workflows: names } : {}),
      ...(row.status === "failed" ? { build_error: row.build_error ?? "The build failed." } : {}),
      deployment_version: row.version,
      entry_point: row.entry_point,
      description: row.description,
      auto_repair: row.auto_repair === 1,
      created_at: row.created_at,
      updated_at: row.updated_at,
    };
  }

  async #unpack(source: string, entry: string): Promise<{ archive: Archive; gzipped: Uint8Array }> {
    let archive: Archive;
    let gzipped: Uint8Array;
    try {
      gzipped = decodeUpload(source, this.#deps.limits);
      archive = await readArchiveBytes(gzipped, this.#deps.limits);
    } catch (error) {
      if (!(error instanceof ArchiveError)) throw error;
      const tooLarge = error.reason === "upload-too-large" || error.reason === "decompressed-too-large" || error.reason === "unpacked-too-large";
      throw new AppError(tooLarge ? "PAYLOAD_TOO_LARGE" : "BAD_REQUEST", `The upload was refused: ${error.message}`, {
        data: { reason: error.reason, issues: [{ path: ["source"], message: error.message }] },
      });
    }
    if (!archive.isFile(entry)) {
      const top = archive.files.filter((f) => !f.path.includes("/")).map((f) => quoteName(f.path)).slice(0, 10);
      throw new AppError(
        "BAD_REQUEST",
        `entry_point ${quoteName(entry)} is not a file in the upload${top.length ? ` (its top-level files: ${top.join(", ")})` : ""}. Name the entry module the upload holds, e.g. index.js.`,
        { data: { issues: [{ path: ["entry_point"], message: "is not a file in the upload" }] } },
      );
    }
    return { archive, gzipped };
  }

  async #build(id: string): Promise<void> {
    try {
      await this.#buildHeld(id);
    } finally {
      this.#held.delete(id);
    }
  }

  async #buildHeld(id: string): Promise<void> {
    const { db, log, clock } = this.#deps;
    if (this.#stopping) return;
    const row = await store.findDeploymentById(db, id);
    if (!row || row.status !== "building") return;
    // Renewed while the build runs (loading the entry point may take a minute); a dead instance renews nothing.
    const renew = setInterval(
      () => void store.renewBuildLease(db, id, this.#leaseUntil(clock.now())).catch(() => {}),
      Math.max(250, Math.floor(this.#deps.buildLeaseMs / 3)),
    );
    const started = performance.now();
    try {
      let dir: string;
      try {
        dir = await this.materialise(row.tenant_id, id);
      } catch (error) {
        if (error instanceof DeploymentUnavailableError) throw new BuildError(error.message);
        throw error;
      }
      const metadata = readMetadata(dir);
      prepareDependencies(dir);
      let discovered: DiscoveredWorkflow[];
      try {
        discovered = await this.#deps.discover(row.tenant_id, dir, row.entry_point, DISCOVER_TIMEOUT_MS);
      } catch (error) {
        const message = (error instanceof Error ? error.message : String(error)).replaceAll(`${dir}/`, "").replaceAll(dir, ".");
        throw new BuildError(`Loading the entry point ${quoteName(row.entry_point)} failed: ${message}`);
      }
      if (discovered.length === 0) {
        throw new BuildError(
          `The entry point ${quoteName(row.entry_point)} exports no workflows. Export each workflow(...) from it (libretto cloud deploy does this for the workflows your entry point imports).`,
        );
      }
      const at = this.#deps.clock.now().toISOString();
      const workflows = discovered.map((w) => workflowRow(row, w, metadata.get(w.name), at));
      await db.transaction().execute((trx) => store.finishBuild(trx, id, { status: "ready", at, workflows }));
      log.log("info", "deployment ready", { deployment_id: id, workflows: workflows.length, build_ms: Math.round(performance.now() - started) });
    } catch (error) {
      const message = error instanceof BuildError ? error.message : "The build failed inside the server; the server log has the detail. Deploy again.";
      // A build runs no job: no credential value can be in its error.
      if (error instanceof BuildError) log.log("info", "deployment build failed", { deployment_id: id, build_error: message });
      else log.log("error", "deployment build failed inside the server", { deployment_id: id, error: error instanceof Error ? error.message : "error" });
      await this.#fail(id, message);
    } finally {
      clearInterval(renew);
    }
  }

  async #fail(id: string, error: string): Promise<void> {
    if (this.#stopping) return;
    const at = this.#deps.clock.now().toISOString();
    await this.#deps.db.transaction().execute((trx) => store.finishBuild(trx, id, { status: "failed", at, error }));
  }
}

/** A build failure whose message is for the person deploying. */
class BuildError extends Error {}

/** A deployment this instance cannot unpack; the message is for the tenant (it names no path). */
export class DeploymentUnavailableError extends Error {}

const sha256Hex = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

export const deploymentNotFound = (id: string) =>
  new AppError("NOT_FOUND", `Deployment ${id} not found. List this tenant's deployments with /v1/deployments/list.`);

/** entry_point as a path inside the upload: `./` dropped; absolute or `..` refused. */
function normalizeEntryPoint(value: string): string {
  const trimmed = value.trim().replace(/^(\.\/)+/, "");
  const normal = posix.normalize(trimmed);
  if (trimmed === "" || trimmed.startsWith("/") || normal.startsWith("..") || normal !== trimmed || trimmed.includes("\\")) {
    throw new AppError("BAD_REQUEST", `entry_point ${quoteName(value)} must be a relative file path inside the upload, e.g. index.js.`, {
      data: { issues: [{ path: ["entry_point"], message: "must be a relative file path inside the upload" }] },
    });
  }
  return trimmed;
}

const metadataSchema = z.object({
  workflows: z.array(
    z.looseObject({
      name: z.string(),
      credentialNames: z.array(z.string()).optional(),
      inputSchema: z.unknown().optional(),
      outputSchema: z.unknown().optional(),
      startUrl: z.string().optional(),
      viewport: z.object({ width: z.number().int().positive(), height: z.number().int().positive() }).optional(),
      authProfileName: z.string().optional(),
      authProfileRefresh: z.boolean().optional(),
    }),
  ),
});
type WorkflowMetadata = z.infer<typeof metadataSchema>["workflows"][number];

/** .libretto-workflows.json by workflow name; an absent file is no metadata, a malformed one fails the build. */
function readMetadata(dir: string): Map<string, WorkflowMetadata> {
  const path = join(dir, METADATA_FILE);
  if (!existsSync(path) || !lstatSync(path).isFile()) return new Map();
  let parsed;
  try {
    parsed = metadataSchema.safeParse(JSON.parse(readFileSync(path, "utf8")));
  } catch {
    throw new BuildError(`${METADATA_FILE} in the upload is not JSON. Deploy again with libretto cloud deploy, which writes it.`);
  }
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new BuildError(`${METADATA_FILE} in the upload is not what libretto cloud deploy writes: ${issue.path.join(".") || "(root)"} ${issue.message}.`);
  }
  return new Map(parsed.data.workflows.map((w) => [w.name, w]));
}

/**
 * Understudy runs offline and never installs packages: every dependency of
 * the upload's package.json must be in the upload (node_modules/<name>),
 * except those Understudy provides. A bundled `libretto/` copy (a file:
 * dependency) is linked as node_modules/libretto so the code finds it as is.
 */
function prepareDependencies(dir: string): void {
  const manifestPath = join(dir, "package.json");
  if (!existsSync(manifestPath)) return;
  let manifest: { dependencies?: Record<string, unknown> };
  try {
    manifest = JSON.parse(readFileSync(manifestPath, "utf8"));
  } catch {
    throw new BuildError("package.json in the upload is not JSON.");
  }
  const dependencies = manifest && typeof manifest.dependencies === "object" && manifest.dependencies ? Object.keys(manifest.dependencies) : [];
  const missing = dependencies.filter(
    (name) => !PROVIDED_PACKAGES.has(name) && !(PACKAGE_NAME.test(name) && existsSync(join(dir, "node_modules", name, "package.json"))),
  );
  if (missing.length > 0) {
    const names = missing.map((n) => quoteName(n)).join(", ");
    throw new BuildError(
      `The upload's package.json depends on ${names}, which ${missing.length === 1 ? "is" : "are"} not in the upload, and Understudy does not install packages (it runs offline). Bundle ${missing.length === 1 ? "it" : "them"} into the deployment (leave ${missing.length === 1 ? "it" : "them"} out of --external), or include node_modules/<name> in the upload.`,
    );
  }
  const bundled = join(dir, "libretto", "package.json");
  const linked = join(dir, "node_modules", "libretto");
  if (existsSync(bundled) && !existsSync(linked)) {
    mkdirSync(join(dir, "node_modules"), { recursive: true });
    symlinkSync("../libretto", linked);
  }
}

function workflowRow(
  deployment: store.DeploymentRow,
  discovered: DiscoveredWorkflow,
  metadata: WorkflowMetadata | undefined,
  at: string,
): store.DeploymentWorkflowRow {
  const name = discovered.name.trim();
  if (name === "" || name.length > 256) throw new BuildError(`A workflow's name must be 1 to 256 characters; the entry point exports ${quoteName(discovered.name)}.`);
  const declared = discovered.credentialNames.length > 0 ? discovered.credentialNames : (metadata?.credentialNames ?? []);
  const credentials = [...new Set(declared.map((c) => c.trim().toLowerCase()).filter((c) => c !== ""))];
  const viewport = discovered.viewport ?? metadata?.viewport;
  return {
    deployment_id: deployment.id,
    tenant_id: deployment.tenant_id,
    name,
    version: deployment.version,
    credential_names: JSON.stringify(credentials),
    input_schema: schemaText(metadata?.inputSchema),
    output_schema: schemaText(metadata?.outputSchema),
    start_url: discovered.startUrl ?? metadata?.startUrl ?? null,
    viewport: viewport ? JSON.stringify({ width: viewport.width, height: viewport.height }) : null,
    auth_profile_name: discovered.authProfileName ?? metadata?.authProfileName ?? null,
    auth_profile_refresh: (discovered.authProfileRefresh ?? metadata?.authProfileRefresh) === undefined ? null : (discovered.authProfileRefresh ?? metadata?.authProfileRefresh) ? 1 : 0,
    created_at: at,
  };
}

function schemaText(schema: unknown): string | null {
  if (schema === undefined || schema === null || typeof schema !== "object") return null;
  const text = JSON.stringify(schema);
  return Buffer.byteLength(text) <= MAX_SCHEMA_BYTES ? text : null;
}
