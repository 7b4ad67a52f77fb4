import { pathToFileURL } from "node:url";
import * as zod from "zod";
import { isBun } from "../store/database";
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
