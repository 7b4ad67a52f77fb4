import { pathToFileURL } from "node:url";
import * as zod from "zod";
import { isBun, isCompiled } from "../runtime";
import { isWorkflowDefinition, workflow, type WorkflowDefinition } from "./define";

let modulesRegistered = false;

/**
 * Lets workflow files written for libretto load anywhere, offline, with no
 * node_modules beside them: `import { workflow } from "libretto"` and
 * `import { z } from "zod"` are served from inside Understudy (the same zod
 * instance the server uses). Under Bun this is a runtime plugin.
 */
export function registerWorkflowModules(): void {
  if (modulesRegistered || !isBun) return;
  modulesRegistered = true;
  const libretto = { workflow, default: { workflow } };
  // Keep in step with libretto.ts, which gives the same module its types.
  const zodExports = { ...zod, default: zod.z };
  Bun.plugin({
    name: "understudy-workflow-modules",
    setup(builder) {
      builder.module("libretto", () => ({ exports: libretto, loader: "object" }));
      for (const specifier of ["zod", "zod/v4"]) builder.module(specifier, () => ({ exports: zodExports, loader: "object" }));
    },
  });
}

let playwrightRegistered = false;

/**
 * Deployed code keeps `playwright` (and `playwright-core`) external and
 * loads it at run time (API.md "Deployments"); Understudy answers both with
 * the playwright-core it carries, offline, and never installs them.
 */
export function registerPlaywrightModules(): void {
  if (playwrightRegistered || !isBun) return;
  playwrightRegistered = true;
  // Loaded on first require: playwright-core costs ~0.45 s and ~70 MB
  // (measured). From source, the package is required by its resolved path:
  // its bare name would come back to this plugin and recurse (measured: an
  // empty module). In the compiled binary the bare name is bundled at build
  // time and never reaches the plugin.
  const resolved = isCompiled ? undefined : require.resolve("playwright-core");
  const playwright = () => (resolved ? require(resolved) : require("playwright-core")) as Record<string, unknown>;
  const load = () => ({ exports: playwright(), loader: "object" as const });
  Bun.plugin({
    name: "understudy-playwright",
    setup(builder) {
      for (const specifier of ["playwright", "playwright-core"]) builder.module(specifier, load);
    },
  });
}

export const WORKFLOW_FILE = /\.(ts|mts|js|mjs)$/;

/**
 * Imports one workflow file and returns every workflow it exports (default or
 * named). `fresh` drops the cached module first, so an edited file reloads.
 */
export async function loadWorkflowFile(path: string, options: { fresh?: boolean } = {}): Promise<WorkflowDefinition[]> {
  if (!isBun) {
    throw new Error("Workflow files are loaded only under Bun (the understudy binary, or npm start); this server runs under Node.");
  }
  registerWorkflowModules();
  // Bun keys its module cache by path and ignores a query string; deleting
  // the require.cache entry is what makes it read the file again (measured).
  if (options.fresh && typeof require !== "undefined") delete require.cache[path];
  const module = (await import(pathToFileURL(path).href)) as Record<string, unknown>;
  const found: WorkflowDefinition[] = [];
  for (const value of Object.values(module)) {
    if (isWorkflowDefinition(value) && !found.includes(value)) found.push(value);
  }
  return found;
}
