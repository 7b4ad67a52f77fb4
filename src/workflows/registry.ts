import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync, watch, type FSWatcher } from "node:fs";
import { join, relative } from "node:path";
import type { Logger } from "../log";
import type { WorkflowDefinition } from "./define";
import { loadWorkflowFile, WORKFLOW_FILE } from "./load";

export interface RegisteredWorkflow {
  name: string;
  status: "ready" | "failed";
  /** Set when ready. */
  definition: WorkflowDefinition | undefined;
  /** Why it failed: the file's load error, or a duplicate name. */
  error: string | undefined;
  /** The file, relative to the workflows directory ("(built-in)" for definitions handed in). */
  file: string;
  /** The file's absolute path, for a worker process to import; undefined for definitions handed in. */
  path: string | undefined;
  workflowId: string;
  deploymentId: string;
  deploymentVersion: string;
  createdAt: string;
  updatedAt: string;
}

/**
 * A UUID (RFC 9562 version 8) derived from a hash, so a workflow keeps its
 * ids across restarts and a changed file gets a new deployment id.
 */
export function uuidFromHash(text: string): string {
  const hex = createHash("sha256").update(text).digest("hex").slice(0, 32).split("");
  hex[12] = "8";
  hex[16] = ((parseInt(hex[16]!, 16) & 0x3) | 0x8).toString(16);
  const h = hex.join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

/**
 * The workflows every tenant can run, by name. Loaded from the workflow files
 * at start; a file that fails to load is listed as failed and stops nothing.
 */
export class WorkflowRegistry {
  #byName = new Map<string, RegisteredWorkflow>();
  #failedFiles: RegisteredWorkflow[] = [];
  readonly #dir: string | undefined;
  readonly #log: Logger;
  #watcher: FSWatcher | undefined;
  #generation = 0;

  private constructor(dir: string | undefined, log: Logger) {
    this.#dir = dir;
    this.#log = log;
  }

  /** A registry of definitions handed in (tests, `understudy run`). */
  static fromDefinitions(definitions: WorkflowDefinition[], log: Logger): WorkflowRegistry {
    const registry = new WorkflowRegistry(undefined, log);
    const at = new Date(0).toISOString();
    registry.#install(
      definitions.map((definition) => ({ file: "(built-in)", path: undefined, definitions: [definition], hash: definition.name, createdAt: at, updatedAt: at })),
      [],
    );
    return registry;
  }

  static async load(dir: string, log: Logger): Promise<WorkflowRegistry> {
    const registry = new WorkflowRegistry(dir, log);
    await registry.reload();
    return registry;
  }

  /** Grows with every (re)load: a worker process started for an older generation has stale code. */
  get generation(): number {
    return this.#generation;
  }

  /** The workflows directory, when loaded from one. */
  get dir(): string | undefined {
    return this.#dir;
  }

  /** A workflow by name; a file that failed to load is found by the name it is listed under (its path). */
  get(name: string): RegisteredWorkflow | undefined {
    const key = name.trim();
    return this.#byName.get(key) ?? this.#failedFiles.find((f) => f.name === key);
  }

  /** Every workflow by name, then every file that failed to load. */
  list(): RegisteredWorkflow[] {
    return [...[...this.#byName.values()].sort((a, b) => a.name.localeCompare(b.name)), ...this.#failedFiles];
  }

  /** Loads every workflow file again; the new set replaces the old one at once. */
  async reload(options: { fresh?: boolean } = {}): Promise<void> {
    const dir = this.#dir;
    if (!dir) return;
    const loaded: LoadedFile[] = [];
    const failed: FailedFile[] = [];
    for (const path of existsSync(dir) ? listWorkflowFiles(dir) : []) {
      const file = relative(dir, path);
      const stat = statSync(path);
      const meta = {
        file,
        path,
        hash: createHash("sha256").update(readFileSync(path)).digest("hex"),
        createdAt: (stat.birthtimeMs > 0 ? stat.birthtime : stat.mtime).toISOString(),
        updatedAt: stat.mtime.toISOString(),
      };
      try {
        loaded.push({ ...meta, definitions: await loadWorkflowFile(path, options) });
      } catch (error) {
        // Every tenant sees this error: name files relative to the workflows directory, not by server path.
        const message = (error instanceof Error ? error.message : String(error)).replaceAll(`${dir}/`, "").replaceAll(dir, ".");
        this.#log.log("error", "workflow file failed to load", { file, error: message });
        failed.push({ ...meta, error: message });
      }
    }
    this.#install(loaded, failed);
    const ready = [...this.#byName.values()].filter((w) => w.status === "ready").length;
    this.#log.log("info", "workflows loaded", { dir, ready, failed: this.list().length - ready });
  }

  /** Dev mode: reload when a file under the directory changes (debounced). Returns a stop function. */
  watch(): () => void {
    if (!this.#dir || !existsSync(this.#dir) || this.#watcher) return () => {};
    let timer: ReturnType<typeof setTimeout> | undefined;
    this.#watcher = watch(this.#dir, { recursive: true }, () => {
      clearTimeout(timer);
      timer = setTimeout(() => void this.reload({ fresh: true }), 150);
    });
    return () => {
      clearTimeout(timer);
      this.#watcher?.close();
      this.#watcher = undefined;
    };
  }

  #install(loaded: LoadedFile[], failed: FailedFile[]) {
    this.#generation += 1;
    const byName = new Map<string, RegisteredWorkflow>();
    const filesOf = new Map<string, string[]>();
    for (const entry of loaded) {
      for (const definition of entry.definitions) {
        filesOf.set(definition.name, [...(filesOf.get(definition.name) ?? []), entry.file]);
        if (byName.has(definition.name)) continue;
        byName.set(definition.name, {
          name: definition.name,
          status: "ready",
          definition,
          error: undefined,
          file: entry.file,
          path: entry.path,
          workflowId: uuidFromHash(`workflow:${definition.name}`),
          deploymentId: uuidFromHash(`deployment:${definition.name}:${entry.hash}`),
          deploymentVersion: entry.hash.slice(0, 12),
          createdAt: entry.createdAt,
          updatedAt: entry.updatedAt,
        });
      }
    }
    // One name, two definitions: neither runs, and the error names both files.
    for (const [name, files] of filesOf) {
      if (files.length < 2) continue;
      const entry = byName.get(name)!;
      const error = `Workflow "${name}" is defined more than once: in ${files.join(" and ")}. Rename one of them.`;
      this.#log.log("error", "duplicate workflow name", { name, files });
      byName.set(name, { ...entry, status: "failed", definition: undefined, error });
    }
    this.#byName = byName;
    this.#failedFiles = failed.map((f) => ({
      name: f.file,
      status: "failed",
      definition: undefined,
      error: f.error,
      file: f.file,
      path: f.path,
      workflowId: uuidFromHash(`workflow-file:${f.file}`),
      deploymentId: uuidFromHash(`deployment-file:${f.file}:${f.hash}`),
      deploymentVersion: f.hash.slice(0, 12),
      createdAt: f.createdAt,
      updatedAt: f.updatedAt,
    }));
  }
}

interface LoadedFile {
  file: string;
  path: string | undefined;
  definitions: WorkflowDefinition[];
  hash: string;
  createdAt: string;
  updatedAt: string;
}

interface FailedFile {
  file: string;
  path: string | undefined;
  error: string;
  hash: string;
  createdAt: string;
  updatedAt: string;
}

function listWorkflowFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    if (entry.name.startsWith(".") || entry.name === "node_modules") continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...listWorkflowFiles(path));
    else if (WORKFLOW_FILE.test(entry.name) && !entry.name.endsWith(".d.ts")) out.push(path);
  }
  return out;
}
