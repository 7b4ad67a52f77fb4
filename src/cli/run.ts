import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { randomId } from "../clock";
import { loadConfig } from "../config";
import { FatalError } from "../errors";
import { stateSecrets, storageState, type StorageState } from "../profiles/state";
import { executeWorkflow } from "../runner/execute";
import type { WorkflowDefinition } from "../workflows/define";
import { loadWorkflowFile } from "../workflows/load";
import { parseDotenv } from "./dotenv";
import { UsageError, type Io } from "./io";

export const RUN_USAGE = `usage: understudy run FILE [--params JSON | --params-file F] [--workflow NAME] [--headed] [--timeout SECONDS] [--profile-state STATE]

Runs one workflow from FILE on this machine, with no server and no database.
The result is printed as JSON on stdout; log lines go to stderr. Exit 0 when
the workflow completes, 1 when it fails or is cancelled (Ctrl-C).

  --params JSON       the params, a JSON object (default {})
  --params-file F     read the params from a JSON file instead
  --workflow NAME     which workflow, when FILE exports several
  --headed            show the browser window
  --timeout SECONDS   stop the workflow after this long (default 1800)
  --profile-state STATE
                      a Playwright storageState JSON file (cookies, localStorage)
                      loaded into the browser before the workflow starts, in
                      place of the server's browser profile; when the workflow
                      declares authProfile with refresh: true, the browser's
                      state is written back to it after a completed run

Credentials: a declared name NAME is read from LIBRETTO_CLOUD_<NAME> in the
environment, else from a .env file in the current directory. Values given in
params.credentials win over both. LIBRETTO_CLOUD_API_KEY is not a credential.`;

export const RUN_OPTIONS = {
  params: { type: "string" },
  "params-file": { type: "string" },
  workflow: { type: "string" },
  headed: { type: "boolean" },
  timeout: { type: "string" },
  "profile-state": { type: "string" },
} as const;

const DEFAULT_TIMEOUT_SECONDS = 1800;
const CREDENTIAL_PREFIX = "LIBRETTO_CLOUD_";
/** LIBRETTO_CLOUD_API_KEY is the Libretto Cloud API key of the CLI, never a workflow credential. */
const NOT_A_CREDENTIAL = "api_key";

export interface LocalCredentialSources {
  /** The workflow's declared names (trimmed, lowercased, as define.ts keeps them). */
  declared: readonly string[];
  env: Readonly<Record<string, string | undefined>>;
  dotenv: Readonly<Record<string, string | undefined>>;
  /** `params.credentials` as the caller gave it; already checked to be strings by name. */
  paramsCredentials: Readonly<Record<string, string>> | undefined;
}

export interface LocalCredentials {
  /** Values by declared name; undefined when nothing resolved (the input then has no `credentials` key). */
  credentials: Record<string, string> | undefined;
  /** Declared names with no value from any source. */
  missing: string[];
}

/**
 * Resolves a local run's credentials (API.md "Local, non-hosted runs"):
 * `LIBRETTO_CLOUD_<NAME>` becomes `<name lowercased>`; empty or
 * whitespace-only values and the name `api_key` are skipped; the environment
 * wins over `.env` (an empty variable counts as unset, so `.env` may fill it);
 * undeclared names are dropped; `params.credentials` wins over both and is
 * filtered to declared names.
 */
export function resolveLocalCredentials(sources: LocalCredentialSources): LocalCredentials {
  const fromDotenv = credentialVariables(sources.dotenv);
  const fromEnv = credentialVariables(sources.env);
  const credentials = new Map<string, string>();
  for (const name of sources.declared) {
    const given = sources.paramsCredentials && Object.hasOwn(sources.paramsCredentials, name) ? sources.paramsCredentials[name] : undefined;
    const value = given ?? fromEnv.get(name) ?? fromDotenv.get(name);
    if (value !== undefined) credentials.set(name, value);
  }
  return {
    credentials: credentials.size > 0 ? Object.fromEntries(credentials) : undefined,
    missing: sources.declared.filter((name) => !credentials.has(name)),
  };
}

/** `LIBRETTO_CLOUD_<NAME>` variables with a usable value, by lowercased name. */
function credentialVariables(variables: Readonly<Record<string, string | undefined>>): Map<string, string> {
  const found = new Map<string, string>();
  // Sorted so that two spellings of one name (FOO, Foo) resolve the same way every time.
  for (const key of Object.keys(variables).sort()) {
    if (!key.startsWith(CREDENTIAL_PREFIX)) continue;
    const name = key.slice(CREDENTIAL_PREFIX.length).toLowerCase();
    const value = variables[key];
    if (name === "" || name === NOT_A_CREDENTIAL || value === undefined || value.trim() === "" || found.has(name)) continue;
    found.set(name, value);
  }
  return found;
}

/** `understudy run`: see RUN_USAGE. */
export async function runWorkflowLocally(io: Io, values: Record<string, string | boolean | undefined>, positionals: string[]): Promise<number> {
  const [file, ...extra] = positionals;
  if (!file) throw new UsageError("run needs the workflow FILE", RUN_USAGE);
  if (extra.length > 0) throw new UsageError(`run takes one FILE, got: ${positionals.join(" ")}`, RUN_USAGE);
  const params = readParams(io, values);
  const timeoutSeconds = readTimeout(values.timeout);
  const config = loadConfig(io.env);

  const path = resolve(io.cwd, file);
  if (!existsSync(path)) throw new UsageError(`no such file: ${file}`, RUN_USAGE);
  const definition = pickWorkflow(await loadWorkflowFile(path), file, values.workflow as string | undefined);
  const stateFile = values["profile-state"] as string | undefined;
  const state = stateFile === undefined ? undefined : readProfileState(io, stateFile);
  if (stateFile === undefined && definition.authProfile) {
    io.err(`[warn] workflow "${definition.name}" declares authProfile "${definition.authProfile.name}"; a local run starts without it unless given --profile-state FILE\n`);
  }
  const refresh = stateFile !== undefined && definition.authProfile?.refresh === true;

  let input = params;
  let credentials: Record<string, string> | undefined;
  if (definition.credentials.length > 0) {
    // Taken out of the params: the handler gets only the filtered, resolved
    // credentials, and no `credentials` key at all when none resolve.
    const { credentials: given, ...rest } = params;
    input = rest;
    const resolved = resolveLocalCredentials({
      declared: definition.credentials,
      env: io.env,
      dotenv: readDotenv(io),
      paramsCredentials: checkParamsCredentials(given),
    });
    credentials = resolved.credentials;
    if (resolved.missing.length > 0) io.err(`[warn] ${missingCredentialsMessage(resolved.missing)}\n`);
  }

  // Ctrl-C cancels the run: the handler's signal fires and the run ends within the grace period.
  const stop = new AbortController();
  void io.stopSignal().then(() => stop.abort("cancelled"));

  const outcome = await executeWorkflow({
    definition,
    params: input,
    credentials,
    secrets: [...Object.entries(credentials ?? {}).map(([name, value]) => ({ name, value })), ...(state ? stateSecrets(state) : [])],
    session: randomId(),
    timeoutMs: timeoutSeconds * 1000,
    graceMs: config.jobs.graceMs,
    maxResultBytes: config.jobs.maxResultBytes,
    browser: {
      headless: values.headed !== true,
      startUrl: definition.startUrl,
      viewport: definition.viewport,
      chromiumPath: config.chromiumPath,
      storageState: state,
    },
    captureState: refresh,
    stop: stop.signal,
    log: (level, message) => io.err(`[${level}] ${message}\n`),
  });

  if (outcome.status === "completed" && refresh && outcome.storageState !== undefined) {
    const saved = storageState.safeParse(outcome.storageState);
    if (saved.success) {
      writeFileSync(resolve(io.cwd, stateFile!), `${JSON.stringify(saved.data, null, 2)}\n`, { mode: 0o600 });
      io.err(`[info] browser state saved to ${stateFile} (authProfile refresh)\n`);
    }
  }
  if (outcome.status === "completed") {
    io.out(`${JSON.stringify(outcome.result, null, 2)}\n`);
    return 0;
  }
  const stack = outcome.mappedStack?.split("\n").filter((line) => /^\s+at /.test(line)) ?? [];
  io.err(`understudy run: workflow "${definition.name}" ${outcome.status} (${outcome.failureClass}): ${outcome.error}\n${stack.map((l) => `${l}\n`).join("")}`);
  return 1;
}

/** --profile-state: a storageState file; what is wrong is said without quoting its values. */
function readProfileState(io: Io, file: string): StorageState {
  let text: string;
  try {
    text = readFileSync(resolve(io.cwd, file), "utf8");
  } catch (error) {
    throw new UsageError(`--profile-state ${file} cannot be read (${(error as NodeJS.ErrnoException).code ?? "unreadable"})`, RUN_USAGE);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new UsageError(`--profile-state ${file} is not valid JSON`, RUN_USAGE);
  }
  const parsed = storageState.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new UsageError(`--profile-state ${file} is not a Playwright storageState: ${issue.path.join(".") || "(file)"}: ${issue.message}`, RUN_USAGE);
  }
  return parsed.data;
}

function missingCredentialsMessage(missing: readonly string[]): string {
  const fromVariables = missing.filter((name) => name !== NOT_A_CREDENTIAL);
  const hints = [
    ...(fromVariables.length > 0 ? [`set ${fromVariables.map((name) => CREDENTIAL_PREFIX + name.toUpperCase()).join(", ")} in the environment or .env`] : []),
    ...(missing.includes(NOT_A_CREDENTIAL) ? [`${NOT_A_CREDENTIAL} can only be given in params.credentials`] : []),
  ];
  return `missing credentials: ${missing.join(", ")} (${hints.join("; ")})`;
}

function readParams(io: Io, values: Record<string, string | boolean | undefined>): Record<string, unknown> {
  const inline = values.params as string | undefined;
  const file = values["params-file"] as string | undefined;
  if (inline !== undefined && file !== undefined) throw new UsageError("give --params or --params-file, not both", RUN_USAGE);
  if (inline === undefined && file === undefined) return {};
  let text: string;
  let source: string;
  if (file !== undefined) {
    source = `--params-file ${file}`;
    try {
      text = readFileSync(resolve(io.cwd, file), "utf8");
    } catch (error) {
      throw new UsageError(`${source} cannot be read (${(error as NodeJS.ErrnoException).code ?? "unreadable"})`, RUN_USAGE);
    }
  } else {
    source = "--params";
    text = inline!;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    // The parser's message quotes at most a token; params may hold a secret, so say only where.
    throw new UsageError(`${source} is not valid JSON${error instanceof SyntaxError ? ` (${error.message.replace(/".*"/s, "...")})` : ""}`, RUN_USAGE);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new UsageError(`${source} must be a JSON object`, RUN_USAGE);
  return parsed as Record<string, unknown>;
}

function readTimeout(value: string | boolean | undefined): number {
  if (value === undefined) return DEFAULT_TIMEOUT_SECONDS;
  const seconds = typeof value === "string" && /^\s*\d+(\.\d+)?\s*$/.test(value) ? Number(value) : NaN;
  if (!(seconds > 0) || seconds > 2 ** 31 / 1000) throw new UsageError(`--timeout must be a number of seconds above 0, got: ${String(value)}`, RUN_USAGE);
  return seconds;
}

function pickWorkflow(found: WorkflowDefinition[], file: string, name: string | undefined): WorkflowDefinition {
  const names = found.map((w) => w.name);
  if (found.length === 0) throw new FatalError(`${file} exports no workflow (define one with \`workflow(name, { handler })\` from "libretto" and export it)`);
  if (name !== undefined) {
    const chosen = found.find((w) => w.name === name);
    if (!chosen) throw new UsageError(`${file} has no workflow "${name}"; it exports: ${names.join(", ")}`, RUN_USAGE);
    return chosen;
  }
  if (found.length > 1) throw new UsageError(`${file} exports several workflows; pick one with --workflow NAME: ${names.join(", ")}`, RUN_USAGE);
  return found[0]!;
}

/** The `.env` of the working directory; a line that is not KEY=VALUE is reported by number only. */
function readDotenv(io: Io): Record<string, string> {
  const path = join(io.cwd, ".env");
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return {};
    throw new FatalError(`${path} cannot be read (${(error as NodeJS.ErrnoException).code ?? "unreadable"})`);
  }
  const { values, invalidLines } = parseDotenv(text);
  if (invalidLines.length > 0) io.err(`[warn] .env: ignored line(s) ${invalidLines.join(", ")} (not KEY=VALUE)\n`);
  return values;
}

function checkParamsCredentials(given: unknown): Record<string, string> | undefined {
  if (given === undefined) return undefined;
  const valid =
    typeof given === "object" && given !== null && !Array.isArray(given) && Object.values(given).every((value) => typeof value === "string");
  if (!valid) throw new UsageError("params.credentials must be an object of strings by credential name", RUN_USAGE);
  return given as Record<string, string>;
}
