import { isAbsolute, join } from "node:path";
import { pathToFileURL } from "node:url";
import type { DiscoveredWorkflow } from "./protocol";

/**
 * Deployed code as libretto shapes it: the entry module exports one object
 * per workflow, branded with Symbol.for("libretto.workflow"), with a `name`
 * and a `run(ctx, input)` (directly, or inside an exported `workflows`
 * object). Used by the worker, and by the server itself in the in-process
 * mode (UNDERSTUDY_WORKFLOW_ISOLATION=none).
 */

const LIBRETTO_BRAND = Symbol.for("libretto.workflow");

export type LibrettoExport = { name: string; run(ctx: unknown, input: unknown): Promise<unknown>; [key: string]: unknown };

async function importEntry(dir: string, entry: string): Promise<Record<string, unknown>> {
  if (!isAbsolute(dir) || isAbsolute(entry) || entry.split(/[\\/]/).includes("..")) throw new Error("Bad deployment path.");
  return (await import(pathToFileURL(join(dir, entry)).href)) as Record<string, unknown>;
}

function isLibrettoExport(value: unknown): value is LibrettoExport {
  if (!value || typeof value !== "object") return false;
  const candidate = value as Record<PropertyKey, unknown>;
  return candidate[LIBRETTO_BRAND] === true && typeof candidate.name === "string" && typeof candidate.run === "function";
}

/** Every branded workflow export (directly, or inside an exported `workflows` object), by name; two distinct ones with one name are refused. */
function librettoExports(module: Record<string, unknown>): Map<string, LibrettoExport> {
  const found = new Map<string, LibrettoExport>();
  const add = (value: unknown) => {
    if (!isLibrettoExport(value)) return;
    const existing = found.get(value.name);
    if (existing && existing !== value) throw new Error(`Two workflows are named "${value.name}"; each workflow() needs a unique name.`);
    found.set(value.name, value);
  };
  for (const [name, value] of Object.entries(module)) {
    if (name === "workflows" && value && typeof value === "object" && !isLibrettoExport(value)) {
      for (const inner of Object.values(value as Record<string, unknown>)) add(inner);
    } else add(value);
  }
  return found;
}

export async function loadDeployedWorkflow(dir: string, entry: string, name: string): Promise<LibrettoExport> {
  const found = librettoExports(await importEntry(dir, entry)).get(name);
  if (!found) throw new Error(`The deployment's entry module no longer exports a workflow named "${name}".`);
  return found;
}

export async function discoverDeployment(dir: string, entry: string): Promise<DiscoveredWorkflow[]> {
  const exports = librettoExports(await importEntry(dir, entry));
  return [...exports.values()].map((w) => {
    const names = Array.isArray(w.credentialNames) ? w.credentialNames.filter((n): n is string => typeof n === "string") : [];
    const viewport = w.viewport as { width?: unknown; height?: unknown } | undefined;
    return {
      name: w.name,
      credentialNames: names,
      ...(typeof w.startUrl === "string" ? { startUrl: w.startUrl } : {}),
      ...(viewport && Number.isInteger(viewport.width) && Number.isInteger(viewport.height)
        ? { viewport: { width: viewport.width as number, height: viewport.height as number } }
        : {}),
      ...(typeof w.authProfileName === "string" ? { authProfileName: w.authProfileName } : {}),
      ...(typeof w.authProfileRefresh === "boolean" ? { authProfileRefresh: w.authProfileRefresh } : {}),
    };
  });
}

