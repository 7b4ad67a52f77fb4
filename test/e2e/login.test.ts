import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { describeWithChromium } from "../chromium";
import { secretForms } from "../helpers";
import type { ServerProcess } from "../process-helpers";
import { call, killChild, serveDeployment, waitForJob, type ServeDeployment } from "./serve-child";

// The seed example, end to end, as a user runs it: examples/workflows served
// by a real `serve` process, credentials stored and the job created through
// the API exactly as the libretto CLI sends them (enveloped), and the
// portal-login workflow driving a real Chromium against a real login form.

const EXAMPLES = join(import.meta.dir, "..", "..", "examples", "workflows");
const USERNAME = "ada.lovelace@portal.test";
const PASSWORD = `Tr0ub4dor&3 "quoted" <b>ünïcode</b>`;
const JOB_TIMEOUT_MS = 45_000;
const TEST_TIMEOUT_MS = 60_000;

const children: ServerProcess[] = [];
const deployments: ServeDeployment[] = [];

afterAll(async () => {
  for (const child of children) await killChild(child);
  for (const deployment of deployments) deployment.remove();
});

/** A serve process of examples/workflows, with a tenant and API key per name in `tenants`. */
async function serveExamples<T extends string>(env: Record<string, string>, tenants: readonly T[]) {
  const deployment = serveDeployment({ workflowsDir: EXAMPLES, env });
  deployments.push(deployment);
  const keys = {} as Record<T, string>;
  for (const tenant of tenants) keys[tenant] = await deployment.addTenant(tenant);
  const server = await deployment.start();
  children.push(server);
  return { server, keys };
}

/** Every place a value could leak to, as one string per place. */
async function leakSurfaces(server: ServerProcess, key: string, jobId: string): Promise<Record<string, string>> {
  const job = await call(server, key, "/v1/jobs/get", { id: jobId });
  const logs = await call(server, key, "/v1/logs/list", { jobId });
  return {
    "jobs/get": JSON.stringify(job.body),
    "logs/list": JSON.stringify(logs.body),
    "server stdout": server.stdout(),
    "server stderr": server.stderr(),
  };
}

function expectNoValue(surfaces: Record<string, string>, values: string[]) {
  for (const [where, text] of Object.entries(surfaces)) {
    for (const value of values) {
      for (const form of secretForms(value)) {
        if (text.includes(form)) throw new Error(`${where} contains a stored value (as ${JSON.stringify(form)})`);
      }
    }
  }
}

describeWithChromium("portal-login end to end: serve process, API, real Chromium", (chromiumPath) => {
  const submissions: URLSearchParams[] = [];
  let portal: ReturnType<typeof Bun.serve>;
  let loginUrl: string;
  let server: ServerProcess;
  // "full" stores both credentials, "partial" only the username.
  let keys: Record<"full" | "partial", string>;

  beforeAll(async () => {
    // A login portal: the form at GET /login, which POSTs back to /login.
    portal = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      async fetch(request) {
        if (new URL(request.url).pathname !== "/login") return new Response("not found", { status: 404 });
        if (request.method === "POST") {
          const form = new URLSearchParams(await request.text());
          submissions.push(form);
          const ok = form.get("username") === USERNAME && form.get("password") === PASSWORD;
          return html(ok ? "Portal home" : "Sign in", ok ? "<h1>Welcome back</h1>" : "<p>Wrong username or password</p>");
        }
        return html(
          "Sign in",
          `<form method="post" action="/login">
            <label for="username">Username</label><input id="username" name="username">
            <label for="password">Password</label><input id="password" name="password" type="password">
            <button type="submit">Sign in</button>
          </form>`,
        );
      },
    });
    loginUrl = `http://127.0.0.1:${portal.port}/login`;
    ({ server, keys } = await serveExamples({ UNDERSTUDY_CHROMIUM_PATH: chromiumPath }, ["full", "partial"]));
  }, 30_000);

  afterAll(() => portal?.stop(true));

  function html(title: string, body: string): Response {
    return new Response(`<!doctype html><html><head><meta charset="utf-8"><title>${title}</title></head><body>${body}</body></html>`, {
      headers: { "content-type": "text/html; charset=utf-8" },
    });
  }

  test(
    "stored credentials reach the login form, the job completes logged in, and no value leaks",
    async () => {
      const started = performance.now();
      for (const [name, value] of [
        ["username", USERNAME],
        ["password", PASSWORD],
      ]) {
        const stored = await call(server, keys.full, "/v1/credentials/create", { name, value });
        expect(stored.status).toBe(200);
        expect(stored.body.success).toBe(true);
      }

      submissions.length = 0;
      const created = await call(server, keys.full, "/v1/jobs/create", { workflow: "portal-login", params: { loginUrl } });
      expect(created.status).toBe(200);
      expect(created.body).toMatchObject({ success: true, status: "queued" });
      const jobId = created.body.job_id as string;

      const job = await waitForJob(server, keys.full, jobId, { timeoutMs: JOB_TIMEOUT_MS });
      expect({ status: job.status, error: job.error }).toEqual({ status: "completed", error: null });
      expect(job.result).toEqual({ loggedIn: true, title: "Portal home" });
      expect(job.params).toEqual({ loginUrl });
      expect(job.workflow).toBe("portal-login");

      // The portal got exactly the stored values, once.
      expect(submissions).toHaveLength(1);
      expect(submissions[0]!.get("username")).toBe(USERNAME);
      expect(submissions[0]!.get("password")).toBe(PASSWORD);

      const logs = await call(server, keys.full, "/v1/logs/list", { jobId });
      const messages = logs.body.logs.map((l: { level: string; message: string }) => `${l.level}: ${l.message}`);
      expect(messages).toEqual(["info: Opening the login page", "info: Submitting the login form"]);

      expectNoValue(await leakSurfaces(server, keys.full, jobId), [USERNAME, PASSWORD]);
      console.info(
        `e2e portal-login: job ran ${Date.parse(job.completed_at) - Date.parse(job.started_at)} ms (Chromium launch included), ` +
          `whole test ${Math.round(performance.now() - started)} ms`,
      );
    },
    TEST_TIMEOUT_MS,
  );

  test(
    "with the declared password not stored, the job log warns naming it",
    async () => {
      expect((await call(server, keys.partial, "/v1/credentials/create", { name: "username", value: USERNAME })).status).toBe(200);

      submissions.length = 0;
      const created = await call(server, keys.partial, "/v1/jobs/create", { workflow: "portal-login", params: { loginUrl } });
      expect(created.status).toBe(200);
      const jobId = created.body.job_id as string;
      const job = await waitForJob(server, keys.partial, jobId, { timeoutMs: JOB_TIMEOUT_MS });
      expect(job.status).toBe("failed");
      expect(job.error).toContain("Store the username and password credentials first");
      console.info(`e2e portal-login without a stored password: ${job.status}${job.error ? `: ${job.error.split("\n")[0]}` : ""}`);
      // The workflow checks its credentials before it fills anything: nothing is submitted.
      expect(submissions).toHaveLength(0);

      const warnings = await call(server, keys.partial, "/v1/logs/list", { jobId, level: "warn" });
      expect(warnings.body.logs.map((l: { message: string }) => l.message)).toEqual([
        "Declared credentials not found, so not injected: password.",
      ]);
      expectNoValue(await leakSurfaces(server, keys.partial, jobId), [USERNAME, PASSWORD]);
    },
    TEST_TIMEOUT_MS,
  );
});

describe("portal-login when Chromium is not where UNDERSTUDY_CHROMIUM_PATH says", () => {
  test(
    "the job fails with a message saying how to install Chromium",
    async () => {
      const missing = "/nonexistent/understudy-test/chromium";
      const { server, keys } = await serveExamples({ UNDERSTUDY_CHROMIUM_PATH: missing }, ["full"]);
      for (const [name, value] of [
        ["username", USERNAME],
        ["password", PASSWORD],
      ]) {
        expect((await call(server, keys.full, "/v1/credentials/create", { name, value })).status).toBe(200);
      }

      // Nothing listens there; the browser is needed before any request is made.
      const created = await call(server, keys.full, "/v1/jobs/create", { workflow: "portal-login", params: { loginUrl: "http://127.0.0.1:9/login" } });
      expect(created.status).toBe(200);
      const job = await waitForJob(server, keys.full, created.body.job_id, { timeoutMs: JOB_TIMEOUT_MS });
      expect(job.status).toBe("failed");
      expect(job.failure_class).toBe("error");
      expect(job.error).toContain(missing);
      expect(job.error).toContain("apt-get install chromium");
      expect(job.error).toContain("UNDERSTUDY_CHROMIUM_PATH");
      expectNoValue(await leakSurfaces(server, keys.full, created.body.job_id), [USERNAME, PASSWORD]);
    },
    TEST_TIMEOUT_MS,
  );
});
