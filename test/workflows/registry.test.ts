import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { memoryLogger } from "../../src/log";
import type { WorkflowContext } from "../../src/workflows/define";
import { WorkflowRegistry } from "../../src/workflows/registry";
import { call, killChild, serveDeployment, type ServeDeployment } from "../e2e/serve-child";
import { tempDir } from "../helpers";
import type { ServerProcess } from "../process-helpers";

// Workflow files as an operator writes them for libretto: they import
// "libretto" and "zod", which Understudy serves itself (no node_modules here).

const temps: { remove(): void }[] = [];
afterAll(() => {
  for (const dir of temps) dir.remove();
});

/** A fresh workflows directory holding `files` (path relative to it -> source). */
function workflowsDir(files: Record<string, string>): string {
  const dir = tempDir("understudy-workflows-");
  temps.push(dir);
  for (const [file, source] of Object.entries(files)) writeFile(dir.path, file, source);
  return dir.path;
}

function writeFile(dir: string, file: string, source: string) {
  const path = join(dir, file);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, source);
}

const HEADER = `import { workflow } from "libretto";\nimport { z } from "zod";\n`;

/** Runs a registered workflow's handler with a bare context (none of these touch the page). */
async function runHandler(registry: WorkflowRegistry, name: string, input: unknown = {}): Promise<unknown> {
  const definition = registry.get(name)?.definition;
  if (!definition) throw new Error(`workflow ${name} is not ready: ${registry.get(name)?.error}`);
  const noop = () => {};
  const ctx = { session: "t", signal: new AbortController().signal, log: { info: noop, warn: noop, error: noop } } as unknown as WorkflowContext;
  return definition.handler(ctx, input);
}

const summary = (registry: WorkflowRegistry) => registry.list().map((w) => [w.name, w.status, w.file]);

describe("WorkflowRegistry.load", () => {
  test("registers default and named exports by name, in all three workflow() forms", async () => {
    const dir = workflowsDir({
      "options.ts": `${HEADER}
export default workflow("with-options", {
  input: z.object({ n: z.number() }),
  async handler(ctx, input) { return { form: "options", n: input.n }; },
});`,
      "named.ts": `${HEADER}
export const first = workflow("definition-and-handler", { credentials: ["token"] }, async () => ({ form: "definition, handler" }));
export const second = workflow("handler-only", async () => ({ form: "handler" }));
// Exported twice (named and default): registered once.
export default first;`,
      "nested/deeper.ts": `${HEADER}
export default workflow("nested", async () => "from a subdirectory");`,
    });
    const registry = await WorkflowRegistry.load(dir, memoryLogger());

    expect(summary(registry)).toEqual([
      ["definition-and-handler", "ready", "named.ts"],
      ["handler-only", "ready", "named.ts"],
      ["nested", "ready", join("nested", "deeper.ts")],
      ["with-options", "ready", "options.ts"],
    ]);
    expect(await runHandler(registry, "with-options", { n: 3 })).toEqual({ form: "options", n: 3 });
    expect(registry.get("with-options")!.definition!.input!.safeParse({ n: "x" }).success).toBe(false);
    expect(await runHandler(registry, "definition-and-handler")).toEqual({ form: "definition, handler" });
    expect(registry.get("definition-and-handler")!.definition!.credentials).toEqual(["token"]);
    expect(await runHandler(registry, "handler-only")).toEqual({ form: "handler" });
    expect(await runHandler(registry, "nested")).toBe("from a subdirectory");
    for (const entry of registry.list()) {
      expect(entry.error).toBeUndefined();
      expect(entry.deploymentId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    }
  });

  test("declared credential names are trimmed, lowercased and deduplicated, in declaration order", async () => {
    const dir = workflowsDir({
      "portal.ts": `${HEADER}
export default workflow("portal", {
  credentials: [" Password ", "USERNAME", "password", "username  ", "Api_Key"],
  async handler(ctx, input) { return Object.keys(input.credentials ?? {}); },
});`,
    });
    const registry = await WorkflowRegistry.load(dir, memoryLogger());
    expect(registry.get("portal")!.definition!.credentials).toEqual(["password", "username", "api_key"]);
  });

  test("a file that throws at import or does not parse is listed as failed with its error, and the others still load", async () => {
    const log = memoryLogger();
    const dir = workflowsDir({
      "a-fine.ts": `${HEADER}export default workflow("fine-before", async () => "ok");`,
      "b-throws.ts": `${HEADER}throw new Error("the portal URL is not configured");\nexport default workflow("never-a", async () => 1);`,
      "c-syntax.ts": `${HEADER}export default workflow("never-b", async () => {{ ;`,
      "d-bad-definition.ts": `${HEADER}export default workflow("no-handler", { credentials: ["x"] } as any);`,
      "e-fine.ts": `${HEADER}export default workflow("fine-after", async () => "ok");`,
    });
    const registry = await WorkflowRegistry.load(dir, log);

    expect(summary(registry)).toEqual([
      ["fine-after", "ready", "e-fine.ts"],
      ["fine-before", "ready", "a-fine.ts"],
      ["b-throws.ts", "failed", "b-throws.ts"],
      ["c-syntax.ts", "failed", "c-syntax.ts"],
      ["d-bad-definition.ts", "failed", "d-bad-definition.ts"],
    ]);
    const failed = Object.fromEntries(registry.list().filter((w) => w.status === "failed").map((w) => [w.file, w]));
    expect(failed["b-throws.ts"]!.error).toBe("the portal URL is not configured");
    expect(failed["c-syntax.ts"]!.error).toContain("Unexpected end of file");
    expect(failed["d-bad-definition.ts"]!.error).toBe('workflow "no-handler" has no handler function');
    for (const entry of Object.values(failed)) expect(entry.definition).toBeUndefined();
    expect(registry.get("never-a")).toBeUndefined();
    expect(await runHandler(registry, "fine-after")).toBe("ok");
    // The operator sees which file failed and why in the server log.
    expect(log.lines.filter((line) => line.includes("workflow file failed to load")).map((line) => JSON.parse(line).file)).toEqual([
      "b-throws.ts",
      "c-syntax.ts",
      "d-bad-definition.ts",
    ]);
  });

  test("two files defining one name: that name is failed, with an error naming both files", async () => {
    const dir = workflowsDir({
      "billing/export.ts": `${HEADER}export default workflow("export", async () => "billing");`,
      "crm/export.ts": `${HEADER}export const exporter = workflow("export", async () => "crm");`,
      "other.ts": `${HEADER}export default workflow("other", async () => "ok");`,
    });
    const registry = await WorkflowRegistry.load(dir, memoryLogger());

    const duplicate = registry.get("export")!;
    expect(duplicate.status).toBe("failed");
    expect(duplicate.definition).toBeUndefined();
    expect(duplicate.error).toContain(join("billing", "export.ts"));
    expect(duplicate.error).toContain(join("crm", "export.ts"));
    expect(registry.get("other")!.status).toBe("ready");
    expect(registry.list().map((w) => w.name)).toEqual(["export", "other"]);
  });

  test("ignores .d.ts, .json, dotfiles, dot directories and node_modules", async () => {
    // Each ignored file would fail loudly if it were imported.
    const boom = (what: string) => `throw new Error("${what} was loaded");\n`;
    const dir = workflowsDir({
      "real.ts": `${HEADER}export default workflow("real", async () => "ok");`,
      "types.d.ts": boom("types.d.ts"),
      "data.json": "{ not json",
      "notes.md": "# notes",
      ".hidden.ts": boom(".hidden.ts"),
      ".cache/cached.ts": boom(".cache/cached.ts"),
      "node_modules/some-package/index.ts": boom("node_modules"),
      "sub/node_modules/other/index.js": boom("nested node_modules"),
    });
    const registry = await WorkflowRegistry.load(dir, memoryLogger());
    expect(summary(registry)).toEqual([["real", "ready", "real.ts"]]);
  });

  test("a missing directory loads no workflows and does not throw", async () => {
    const registry = await WorkflowRegistry.load(join(workflowsDir({}), "does-not-exist"), memoryLogger());
    expect(registry.list()).toEqual([]);
  });

  test("reload({ fresh: true }) picks up an edited file, and a fixed broken file", async () => {
    const dir = workflowsDir({
      "editable.ts": `${HEADER}export default workflow("editable", { credentials: ["old"] }, async () => ({ version: 1 }));`,
      "broken.ts": `${HEADER}throw new Error("not yet");`,
    });
    const registry = await WorkflowRegistry.load(dir, memoryLogger());
    const before = registry.get("editable")!;
    expect(await runHandler(registry, "editable")).toEqual({ version: 1 });
    expect(registry.get("broken.ts")!.status).toBe("failed");

    writeFile(dir, "editable.ts", `${HEADER}export default workflow("editable", { credentials: ["new"] }, async () => ({ version: 2 }));`);
    writeFile(dir, "broken.ts", `${HEADER}export default workflow("was-broken", async () => "fixed");`);
    await registry.reload({ fresh: true });

    const after = registry.get("editable")!;
    expect(await runHandler(registry, "editable")).toEqual({ version: 2 });
    expect(after.definition!.credentials).toEqual(["new"]);
    // Same workflow, new deployment.
    expect(after.workflowId).toBe(before.workflowId);
    expect(after.deploymentId).not.toBe(before.deploymentId);
    expect(await runHandler(registry, "was-broken")).toBe("fixed");
    expect(registry.get("broken.ts")).toBeUndefined();
    expect(summary(registry)).toEqual([
      ["editable", "ready", "editable.ts"],
      ["was-broken", "ready", "broken.ts"],
    ]);
  });

  test("watch() picks up a new file", async () => {
    const dir = workflowsDir({ "first.ts": `${HEADER}export default workflow("first", async () => 1);` });
    const registry = await WorkflowRegistry.load(dir, memoryLogger());
    const stop = registry.watch();
    try {
      writeFile(dir, "second.ts", `${HEADER}export default workflow("second", async () => 2);`);
      const deadline = Date.now() + 5000;
      while (registry.get("second")?.status !== "ready") {
        if (Date.now() > deadline) throw new Error(`watch() did not load second.ts within 5 s: ${JSON.stringify(summary(registry))}`);
        await Bun.sleep(25);
      }
      expect(await runHandler(registry, "second")).toBe(2);
      expect(registry.get("first")!.status).toBe("ready");
    } finally {
      stop();
    }
  });
});

describe("workflows through the API (a real serve process)", () => {
  let deployment: ServeDeployment;
  let server: ServerProcess | undefined;
  let key: string;

  beforeAll(async () => {
    const dir = workflowsDir({
      "greets.ts": `${HEADER}
export default workflow("greets", {
  credentials: ["Token", "token"],
  input: z.object({ name: z.string() }),
  output: z.object({ greeting: z.string() }),
  async handler(ctx, input) { return { greeting: "hi " + input.name }; },
});`,
      "broken.ts": `${HEADER}throw new Error("the portal URL is not configured");`,
      "one/twice.ts": `${HEADER}export default workflow("twice", async () => 1);`,
      "two/twice.ts": `${HEADER}export default workflow("twice", async () => 2);`,
    });
    deployment = serveDeployment({ workflowsDir: dir });
    key = await deployment.addTenant("acme");
    server = await deployment.start();
  }, 30_000);

  afterAll(async () => {
    await killChild(server);
    deployment?.remove();
  });

  test("workflows/list shows ready and failed entries with their errors", async () => {
    const listed = await call(server!, key, "/v1/workflows/list");
    expect(listed.status).toBe(200);
    expect(listed.body.in_progress_builds).toEqual([]);
    const rows = listed.body.deployed_workflows.map((w: any) => [w.name, w.deployment_status, w.error]);
    expect(rows).toEqual([
      ["greets", "ready", null],
      ["twice", "failed", `Workflow "twice" is defined more than once: in ${join("one", "twice.ts")} and ${join("two", "twice.ts")}. Rename one of them.`],
      ["broken.ts", "failed", "the portal URL is not configured"],
    ]);
    for (const w of listed.body.deployed_workflows) {
      expect(w.deployment_id).toMatch(/^[0-9a-f-]{36}$/);
      expect(Date.parse(w.created_at)).not.toBeNaN();
      expect(Date.parse(w.updated_at)).not.toBeNaN();
    }
  });

  test("workflows/get of a ready one gives its credential names and schemas", async () => {
    const got = await call(server!, key, "/v1/workflows/get", { workflow: "greets" });
    expect(got.status).toBe(200);
    expect(got.body.deployment_status).toBe("ready");
    expect(got.body.credential_names).toEqual(["token"]);
    expect(got.body.input_schema).toMatchObject({ type: "object", properties: { name: { type: "string" } } });
    expect(got.body.output_schema).toMatchObject({ type: "object", properties: { greeting: { type: "string" } } });
  });

  test("workflows/get of failed ones: a duplicate name and a file that failed to load", async () => {
    const duplicate = await call(server!, key, "/v1/workflows/get", { workflow: "twice" });
    expect(duplicate.status).toBe(200);
    expect(duplicate.body).toMatchObject({ name: "twice", deployment_status: "failed", credential_names: [], input_schema: null, output_schema: null });
    expect(duplicate.body.error).toContain("defined more than once");

    // Listed under its file name, so it can be looked up by that name too.
    const file = await call(server!, key, "/v1/workflows/get", { workflow: "broken.ts" });
    expect(file.status).toBe(200);
    expect(file.body).toMatchObject({ name: "broken.ts", deployment_status: "failed", error: "the portal URL is not configured" });
  });

  test("jobs/create of a failed workflow is 409 with the reason, of an unknown one 404", async () => {
    const duplicate = await call(server!, key, "/v1/jobs/create", { workflow: "twice" });
    expect(duplicate.status).toBe(409);
    expect(duplicate.body.code).toBe("CONFLICT");
    expect(duplicate.body.message).toContain("failed to load");
    expect(duplicate.body.message).toContain("defined more than once");

    const file = await call(server!, key, "/v1/jobs/create", { workflow: "broken.ts" });
    expect(file.status).toBe(409);
    expect(file.body.message).toContain("the portal URL is not configured");

    const unknown = await call(server!, key, "/v1/jobs/create", { workflow: "no-such-workflow" });
    expect(unknown.status).toBe(404);
    expect(unknown.body.code).toBe("NOT_FOUND");
    expect(unknown.body.message).toContain("/v1/workflows/list");

    // None of them queued anything.
    expect((await call(server!, key, "/v1/jobs/list")).body.jobs).toEqual([]);

    const ok = await call(server!, key, "/v1/jobs/create", { workflow: "greets", params: { name: "Ada" } });
    expect(ok.status).toBe(200);
  });
});
