import { afterAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseDotenv } from "../../src/cli/dotenv";
import { resolveLocalCredentials } from "../../src/cli/run";
import { tempDir } from "../helpers";
import { childEnv, runCliProcess } from "../process-helpers";

const FIXTURES = join(import.meta.dir, "..", "fixtures", "run");
/** Declares token, db_password and api_key; returns its input with each credential reversed (results are redacted). */
const ECHO = join(FIXTURES, "echo.ts");

// Each case starts a real `understudy run` process (a second or more each);
// bunfig.toml's [test] timeout is not a setting Bun reads, so it is set here.
setDefaultTimeout(30_000);

const dirs: { remove(): void }[] = [];
afterAll(() => {
  for (const d of dirs) d.remove();
});

/** A fresh working directory, with a .env when given. */
function workDir(dotenv?: string): string {
  const dir = tempDir();
  dirs.push(dir);
  if (dotenv !== undefined) writeFileSync(join(dir.path, ".env"), dotenv);
  return dir.path;
}

const reversed = (value: string) => [...value].reverse().join("");

/** Runs `understudy run ECHO` and returns its parsed result (asserting it completed). */
async function echo(options: { env?: Record<string, string>; dotenv?: string; params?: unknown }) {
  const args = ["run", ECHO, ...(options.params === undefined ? [] : ["--params", JSON.stringify(options.params)])];
  const run = await runCliProcess(args, { cwd: workDir(options.dotenv), env: options.env });
  if (run.code !== 0) throw new Error(`run exited ${run.code}: ${run.stderr}`);
  return { result: JSON.parse(run.stdout) as Record<string, unknown>, stderr: run.stderr };
}

describe("understudy run: credentials (API.md, Local, non-hosted runs)", () => {
  test("LIBRETTO_CLOUD_<NAME> in the environment becomes credentials.<name lowercased>", async () => {
    const { result } = await echo({ env: { LIBRETTO_CLOUD_TOKEN: "env-token-value", LIBRETTO_CLOUD_DB_PASSWORD: "env-db-pass" } });
    expect(result).toEqual({
      credentials: { token: reversed("env-token-value"), db_password: reversed("env-db-pass") },
      hasCredentialsKey: true,
    });
  });

  test("a .env in the current directory supplies them too", async () => {
    const { result } = await echo({
      dotenv: '# local secrets\nexport LIBRETTO_CLOUD_TOKEN="dotenv token"\nLIBRETTO_CLOUD_DB_PASSWORD=\'dotenv-db-pass\' # trailing comment\n',
    });
    expect(result.credentials).toEqual({ token: reversed("dotenv token"), db_password: reversed("dotenv-db-pass") });
  });

  test("the environment wins over .env", async () => {
    const { result } = await echo({
      env: { LIBRETTO_CLOUD_TOKEN: "from-the-environment" },
      dotenv: "LIBRETTO_CLOUD_TOKEN=from-dotenv-file\nLIBRETTO_CLOUD_DB_PASSWORD=dotenv-db-pass\n",
    });
    expect(result.credentials).toEqual({ token: reversed("from-the-environment"), db_password: reversed("dotenv-db-pass") });
  });

  test("empty and whitespace-only values are skipped (an empty variable lets .env fill in)", async () => {
    const skipped = await echo({ env: { LIBRETTO_CLOUD_TOKEN: "   \t", LIBRETTO_CLOUD_DB_PASSWORD: "" } });
    expect(skipped.result).toEqual({ hasCredentialsKey: false });
    const filled = await echo({ env: { LIBRETTO_CLOUD_TOKEN: "" }, dotenv: "LIBRETTO_CLOUD_TOKEN=dotenv-fills-in\nLIBRETTO_CLOUD_DB_PASSWORD=\n" });
    expect(filled.result.credentials).toEqual({ token: reversed("dotenv-fills-in") });
  });

  test("LIBRETTO_CLOUD_API_KEY is not a credential, even when api_key is declared", async () => {
    const { result, stderr } = await echo({
      env: { LIBRETTO_CLOUD_API_KEY: "libretto-cloud-key", LIBRETTO_CLOUD_TOKEN: "env-token-value" },
      dotenv: "LIBRETTO_CLOUD_API_KEY=dotenv-cloud-key\n",
    });
    expect(result.credentials).toEqual({ token: reversed("env-token-value") });
    expect(stderr).toContain("api_key can only be given in params.credentials");
  });

  test("undeclared names are dropped", async () => {
    const { result } = await echo({
      env: { LIBRETTO_CLOUD_TOKEN: "env-token-value", LIBRETTO_CLOUD_OTHER_SERVICE: "not-declared" },
      dotenv: "LIBRETTO_CLOUD_SOMETHING_ELSE=not-declared-either\n",
    });
    expect(result.credentials).toEqual({ token: reversed("env-token-value") });
  });

  test("params.credentials wins over the environment and is filtered to declared names", async () => {
    const { result } = await echo({
      env: { LIBRETTO_CLOUD_TOKEN: "env-token-value", LIBRETTO_CLOUD_DB_PASSWORD: "env-db-pass" },
      params: { page: 2, credentials: { token: "given-token", api_key: "given-api-key", undeclared: "dropped" } },
    });
    expect(result).toEqual({
      page: 2,
      credentials: { token: reversed("given-token"), db_password: reversed("env-db-pass"), api_key: reversed("given-api-key") },
      hasCredentialsKey: true,
    });
  });

  test("a workflow that declares nothing gets its params untouched, credentials and all", async () => {
    const params = { query: "shoes", credentials: { token: "caller-value" }, nested: { list: [1, "two", null] } };
    const run = await runCliProcess(["run", join(FIXTURES, "declares-nothing.ts"), "--params", JSON.stringify(params)], {
      cwd: workDir("LIBRETTO_CLOUD_TOKEN=dotenv-token\n"),
      env: { LIBRETTO_CLOUD_TOKEN: "env-token-value" },
    });
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual(params);
    expect(run.stderr).not.toContain("missing");
  });

  test("when nothing resolves the input has no credentials key, not even the caller's undeclared ones", async () => {
    const none = await echo({ params: { page: 1 } });
    expect(none.result).toEqual({ page: 1, hasCredentialsKey: false });
    const onlyUndeclared = await echo({ params: { page: 1, credentials: { undeclared: "dropped" } } });
    expect(onlyUndeclared.result).toEqual({ page: 1, hasCredentialsKey: false });
  });

  test("declared names with no value are named in a warn line on stderr, values never", async () => {
    const { stderr } = await echo({ env: { LIBRETTO_CLOUD_TOKEN: "env-token-value" } });
    expect(stderr).toContain("[warn] missing credentials: db_password, api_key (set LIBRETTO_CLOUD_DB_PASSWORD in the environment or .env;");
    expect(stderr).not.toContain("env-token-value");
  });
});

describe("understudy run: outcome", () => {
  test("a completed run prints its result as JSON on stdout and exits 0", async () => {
    const run = await runCliProcess(["run", join(FIXTURES, "declares-nothing.ts"), "--params", '{"a":1}'], { cwd: workDir() });
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual({ a: 1 });
  });

  test("--params-file reads the params from a file, relative to the current directory", async () => {
    const cwd = workDir();
    writeFileSync(join(cwd, "params.json"), '{"from":"file"}');
    const run = await runCliProcess(["run", join(FIXTURES, "declares-nothing.ts"), "--params-file", "params.json"], { cwd });
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual({ from: "file" });
  });

  test("--workflow picks one of several workflows in a file", async () => {
    const run = await runCliProcess(["run", join(FIXTURES, "two-workflows.ts"), "--workflow", "second"], { cwd: workDir() });
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual({ ran: "second" });
  });

  test("a workflow that throws exits 1 with its message on stderr and nothing on stdout", async () => {
    const run = await runCliProcess(["run", join(FIXTURES, "throws.ts")], { cwd: workDir() });
    expect(run.code).toBe(1);
    expect(run.stdout).toBe("");
    expect(run.stderr).toContain("[info] about to fail");
    expect(run.stderr).toContain("the login form was not found");
  });

  test("a credential the workflow logs, in any form or split across two lines, is redacted on stderr", async () => {
    const token = "sk/live+4f9a 2c7e1b";
    const run = await runCliProcess(["run", join(FIXTURES, "logs-secret.ts")], { cwd: workDir(), env: { LIBRETTO_CLOUD_TOKEN: token } });
    expect(run.code).toBe(0);
    for (const form of [token, Buffer.from(token).toString("base64"), encodeURIComponent(token), token.slice(0, 7), token.slice(7)]) {
      expect(run.stderr).not.toContain(form);
    }
    expect(run.stderr).toContain("[info] exact: [REDACTED:token]\n");
    expect(run.stderr).toContain("[info] base64: [REDACTED:token]\n");
    expect(run.stderr).toContain("[warn] url: [REDACTED:token]\n");
    expect(run.stderr).toContain("[info] split: [REDACTED:token]\n[info] [REDACTED:token] :end\n");
  });

  test("Ctrl-C (SIGINT) cancels the run: the handler's signal fires and the exit code is 1", async () => {
    const child = Bun.spawn([process.execPath, join(import.meta.dir, "..", "..", "src", "main.ts"), "run", join(FIXTURES, "waits.ts")], {
      cwd: workDir(),
      env: childEnv({}),
      stdout: "pipe",
      stderr: "pipe",
    });
    const killer = setTimeout(() => child.kill("SIGKILL"), 20_000);
    let stderr = "";
    const decoder = new TextDecoder();
    const reader = child.stderr.getReader();
    while (!stderr.includes("waiting\n")) {
      const chunk = await reader.read();
      if (chunk.done) break;
      stderr += decoder.decode(chunk.value, { stream: true });
    }
    child.kill("SIGINT");
    for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) stderr += decoder.decode(chunk.value, { stream: true });
    const [code, stdout] = await Promise.all([child.exited, new Response(child.stdout).text()]);
    clearTimeout(killer);
    expect(code).toBe(1);
    expect(stdout).toBe("");
    expect(stderr).toContain('workflow "waits" cancelled');
  });
});

describe("understudy run: usage errors exit 2", () => {
  const cases: [string, string[], string][] = [
    ["no file", ["run"], "needs the workflow FILE"],
    ["two files", ["run", ECHO, ECHO], "takes one FILE"],
    ["a file that does not exist", ["run", "no-such-workflow.ts"], "no such file"],
    ["bad JSON in --params", ["run", ECHO, "--params", "{not json"], "--params is not valid JSON"],
    ["--params that is not an object", ["run", ECHO, "--params", "[1,2]"], "must be a JSON object"],
    ["both --params and --params-file", ["run", ECHO, "--params", "{}", "--params-file", "p.json"], "not both"],
    ["an unreadable --params-file", ["run", ECHO, "--params-file", "missing.json"], "cannot be read"],
    ["params.credentials that is not an object of strings", ["run", ECHO, "--params", '{"credentials":{"token":1}}'], "params.credentials"],
    ["a bad --timeout", ["run", ECHO, "--timeout", "soon"], "--timeout"],
    ["several workflows and no --workflow", ["run", join(FIXTURES, "two-workflows.ts")], "pick one with --workflow NAME: first, second"],
    ["an unknown --workflow", ["run", join(FIXTURES, "two-workflows.ts"), "--workflow", "third"], 'no workflow "third"; it exports: first, second'],
  ];
  test.each(cases)("%s", async (_, args, message) => {
    const run = await runCliProcess(args, { cwd: workDir() });
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(message);
    expect(run.stderr).toContain("usage: understudy run FILE");
    expect(run.stdout).toBe("");
  });
});

describe("resolveLocalCredentials", () => {
  const declared = ["token", "db_password", "api_key"];
  const resolve = (sources: Partial<Parameters<typeof resolveLocalCredentials>[0]>) =>
    resolveLocalCredentials({ declared, env: {}, dotenv: {}, paramsCredentials: undefined, ...sources });

  test.each([
    ["environment", { env: { LIBRETTO_CLOUD_TOKEN: "e" } }, { token: "e" }],
    [".env", { dotenv: { LIBRETTO_CLOUD_TOKEN: "d" } }, { token: "d" }],
    ["environment over .env", { env: { LIBRETTO_CLOUD_TOKEN: "e" }, dotenv: { LIBRETTO_CLOUD_TOKEN: "d" } }, { token: "e" }],
    ["empty environment value: .env fills in", { env: { LIBRETTO_CLOUD_TOKEN: " " }, dotenv: { LIBRETTO_CLOUD_TOKEN: "d" } }, { token: "d" }],
    ["empty and whitespace values skipped", { env: { LIBRETTO_CLOUD_TOKEN: "", LIBRETTO_CLOUD_DB_PASSWORD: "\t \n" } }, undefined],
    ["api_key skipped", { env: { LIBRETTO_CLOUD_API_KEY: "k" }, dotenv: { LIBRETTO_CLOUD_API_KEY: "k" } }, undefined],
    ["undeclared dropped", { env: { LIBRETTO_CLOUD_OTHER: "o" } }, undefined],
    ["name lowercased", { env: { LIBRETTO_CLOUD_Db_Password: "p" } }, { db_password: "p" }],
    ["prefix is case-sensitive", { env: { libretto_cloud_token: "t" } }, undefined],
    ["undefined entries ignored", { env: { LIBRETTO_CLOUD_TOKEN: undefined } }, undefined],
    [
      "params.credentials wins and is filtered",
      { env: { LIBRETTO_CLOUD_TOKEN: "e", LIBRETTO_CLOUD_DB_PASSWORD: "p" }, paramsCredentials: { token: "given", api_key: "k", other: "x" } },
      { token: "given", db_password: "p", api_key: "k" },
    ],
    ["nothing resolves: undefined", {}, undefined],
  ] as const)("%s", (_, sources, expected) => {
    expect(resolve(sources as Partial<Parameters<typeof resolveLocalCredentials>[0]>).credentials).toEqual(expected as never);
  });

  test("reports the declared names left without a value, in declaration order", () => {
    expect(resolve({ env: { LIBRETTO_CLOUD_DB_PASSWORD: "p" } }).missing).toEqual(["token", "api_key"]);
    expect(resolve({ env: { LIBRETTO_CLOUD_TOKEN: "t", LIBRETTO_CLOUD_DB_PASSWORD: "p" }, paramsCredentials: { api_key: "k" } }).missing).toEqual([]);
  });

  test("declaring nothing resolves nothing", () => {
    expect(resolveLocalCredentials({ declared: [], env: { LIBRETTO_CLOUD_TOKEN: "t" }, dotenv: {}, paramsCredentials: { token: "x" } })).toEqual({
      credentials: undefined,
      missing: [],
    });
  });
});

describe("parseDotenv", () => {
  test("KEY=VALUE lines, export prefix, comments, quotes and escapes", () => {
    const text = [
      "\uFEFF# a comment",
      "",
      "PLAIN=value",
      "  SPACED  =  padded value  ",
      "export EXPORTED=yes",
      "INLINE=before # a comment",
      "HASH=pass#word",
      "SINGLE='literal \\n $HOME # not a comment'",
      'DOUBLE="line one\\nline two\\t\\"quoted\\" \\\\ \\x" # comment',
      'MULTI="first',
      'second"',
      "EMPTY=",
      "QUOTED_EMPTY=''",
      "DUP=first",
      "DUP=second",
      "dotted.name-1=ok",
      "not an assignment",
      "1BAD=starts with a digit",
      'OPEN="never closed',
      "AFTER=still read\r",
    ].join("\n");
    const { values, invalidLines } = parseDotenv(text);
    expect(values).toEqual({
      PLAIN: "value",
      SPACED: "padded value",
      EXPORTED: "yes",
      INLINE: "before",
      HASH: "pass#word",
      SINGLE: "literal \\n $HOME # not a comment",
      DOUBLE: 'line one\nline two\t"quoted" \\ \\x',
      MULTI: "first\nsecond",
      EMPTY: "",
      QUOTED_EMPTY: "",
      DUP: "second",
      "dotted.name-1": "ok",
      AFTER: "still read",
    });
    expect(invalidLines).toEqual([17, 18, 19]);
  });

  test("a __proto__ key is an ordinary key", () => {
    const { values } = parseDotenv("__proto__=x\n");
    expect(Object.getPrototypeOf(values)).toBe(Object.prototype);
    expect(Object.hasOwn(values, "__proto__")).toBe(true);
  });
});
