import type { ZodType } from "zod";
import { normaliseProfileName } from "../profiles/state";

/** A log sink the handler can write to; every line goes through the job's redactor. */
export interface WorkflowLog {
  info(...args: unknown[]): void;
  warn(...args: unknown[]): void;
  error(...args: unknown[]): void;
}

/**
 * What a handler receives besides its input. `page` is a Playwright page,
 * created on first use: a workflow that never touches it never starts a browser.
 */
export interface WorkflowContext {
  readonly page: import("playwright-core").Page;
  /** The job id (a local run: a random id). */
  readonly session: string;
  /** Fires on cancel, timeout or shutdown; the handler should stop soon after. */
  readonly signal: AbortSignal;
  readonly log: WorkflowLog;
}

export type WorkflowHandler<I = any, O = unknown> = (ctx: WorkflowContext, input: I) => O | Promise<O>;

export interface WorkflowOptions<I = any, O = unknown> {
  /** Credential names the workflow needs; only these are injected. */
  credentials?: readonly string[];
  /** zod schema of the params; checked before the handler runs. */
  input?: ZodType;
  /** zod schema of the result (documentation; exported as JSON Schema). */
  output?: ZodType;
  startUrl?: string;
  viewport?: { width: number; height: number };
  /** The tenant's browser profile whose state the job's browser starts with; with refresh, saved back after a successful job. */
  authProfile?: string | { name: string; refresh?: boolean };
  handler?: WorkflowHandler<I, O>;
}

const WORKFLOW = Symbol.for("understudy.workflow");

export interface WorkflowDefinition<I = any, O = unknown> {
  readonly [WORKFLOW]: true;
  readonly name: string;
  /** Trimmed, lowercased, deduplicated, in declaration order. */
  readonly credentials: readonly string[];
  readonly input: ZodType | undefined;
  readonly output: ZodType | undefined;
  readonly startUrl: string | undefined;
  readonly viewport: { width: number; height: number } | undefined;
  /** The declared browser profile, its name normalised (trimmed). */
  readonly authProfile: AuthProfile | undefined;
  readonly handler: WorkflowHandler<I, O>;
}

export interface AuthProfile {
  readonly name: string;
  readonly refresh: boolean;
}

export class WorkflowDefinitionError extends Error {}

/**
 * Defines a workflow, in the libretto forms:
 *   workflow(name, { credentials, input, output, startUrl, viewport, handler })
 *   workflow(name, definition, handler)
 *   workflow(name, handler)
 */
export function workflow<I = any, O = unknown>(
  name: string,
  definitionOrHandler: WorkflowOptions<I, O> | WorkflowHandler<I, O>,
  maybeHandler?: WorkflowHandler<I, O>,
): WorkflowDefinition<I, O> {
  if (typeof name !== "string" || name.trim() === "") throw new WorkflowDefinitionError("workflow() needs a name string as its first argument");
  const options: WorkflowOptions<I, O> = typeof definitionOrHandler === "function" ? { handler: definitionOrHandler } : { ...definitionOrHandler };
  const handler = maybeHandler ?? options.handler;
  if (typeof handler !== "function") throw new WorkflowDefinitionError(`workflow "${name}" has no handler function`);
  const declared = options.credentials ?? [];
  if (!Array.isArray(declared) || declared.some((c) => typeof c !== "string")) {
    throw new WorkflowDefinitionError(`workflow "${name}": credentials must be an array of names`);
  }
  const credentials = [...new Set(declared.map((c) => c.trim().toLowerCase()).filter((c) => c !== ""))];
  const authProfile = authProfileOf(name, options.authProfile);
  return Object.freeze({
    [WORKFLOW]: true as const,
    name: name.trim(),
    credentials: Object.freeze(credentials),
    input: options.input,
    output: options.output,
    startUrl: options.startUrl,
    viewport: options.viewport,
    authProfile,
    handler,
  });
}

/** authProfile: "name" or {name, refresh?}, as libretto takes it. */
function authProfileOf(workflowName: string, declared: WorkflowOptions["authProfile"]): AuthProfile | undefined {
  if (declared === undefined || declared === null) return undefined;
  const raw = typeof declared === "string" ? declared : typeof declared === "object" ? declared.name : undefined;
  const refresh = typeof declared === "object" ? declared.refresh : undefined;
  const name = typeof raw === "string" ? normaliseProfileName(raw) : undefined;
  if (!name || (refresh !== undefined && typeof refresh !== "boolean")) {
    throw new WorkflowDefinitionError(
      `workflow "${workflowName}": authProfile must be a profile name (letters, digits, '.', '_', '-') or { name, refresh?: boolean }`,
    );
  }
  return Object.freeze({ name, refresh: refresh === true });
}

export function isWorkflowDefinition(value: unknown): value is WorkflowDefinition {
  return typeof value === "object" && value !== null && (value as Record<symbol, unknown>)[WORKFLOW] === true;
}

/**
 * A workflow file's handler input: the params checked against its input
 * schema (the parsed value, defaults applied), then the injected credentials
 * under `credentials` when there are any. In the server (in-process mode)
 * and in a worker alike.
 */
export function handlerInput(
  definition: Pick<WorkflowDefinition, "name" | "input">,
  params: Record<string, unknown>,
  credentials: Record<string, string> | undefined,
): { ok: true; input: unknown } | { ok: false; error: string } {
  let checked: unknown = params;
  if (definition.input) {
    const parsed = definition.input.safeParse(params);
    if (!parsed.success) {
      const fields = parsed.error.issues.map((i) => `${i.path.length ? i.path.join(".") : "(input)"}: ${i.message}`).join("; ");
      return { ok: false, error: `Invalid input for workflow "${definition.name}": ${fields}` };
    }
    checked = parsed.data;
  }
  return { ok: true, input: credentials ? { ...(checked as object), credentials } : checked };
}
