import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { createLazyBrowser } from "../../src/browser/browser";
import type { WorkflowContext, WorkflowDefinition } from "../../src/workflows/define";
import { loadWorkflowFile } from "../../src/workflows/load";
import { describeWithChromium } from "../chromium";

const EXAMPLES = join(import.meta.dir, "../../examples/workflows");
const TEST_TIMEOUT_MS = 30_000;

async function loadExample(file: string): Promise<WorkflowDefinition> {
  const [definition, ...others] = await loadWorkflowFile(join(EXAMPLES, file));
  expect(others).toEqual([]);
  return definition!;
}

function contextWith(page: WorkflowContext["page"], signal: AbortSignal) {
  const lines: string[] = [];
  const line = (level: string) => (...args: unknown[]) => void lines.push(`${level}: ${args.join(" ")}`);
  const ctx: WorkflowContext = { page, session: "t", signal, log: { info: line("info"), warn: line("warn"), error: line("error") } };
  return { ctx, lines };
}

test("hello.ts greets by name, with no credentials and no browser", async () => {
  const hello = await loadExample("hello.ts");
  expect(hello.name).toBe("hello");
  expect(hello.credentials).toEqual([]);

  const browser = createLazyBrowser({ headless: true });
  const { ctx } = contextWith(browser.page, new AbortController().signal);
  expect(await hello.handler(ctx, hello.input!.parse({}))).toEqual({ greeting: "Hello, world!" });
  expect(await hello.handler(ctx, hello.input!.parse({ name: "Ada" }))).toEqual({ greeting: "Hello, Ada!" });
  expect(browser.started).toBe(false);
});

describeWithChromium("examples/workflows/login.ts (real Chromium)", (chromiumPath) => {
  const USERNAME = "ada@example.test";
  const PASSWORD = `p4ss "word" & <more>`;
  const submissions: URLSearchParams[] = [];
  let server: ReturnType<typeof Bun.serve>;
  let loginUrl: string;

  beforeAll(() => {
    // A login portal: the form at GET /login, which POSTs back to /login.
    server = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      async fetch(request) {
        if (new URL(request.url).pathname !== "/login") return new Response("not found", { status: 404 });
        if (request.method === "POST") {
          const form = new URLSearchParams(await request.text());
          submissions.push(form);
          const ok = form.get("username") === USERNAME && form.get("password") === PASSWORD;
          return page(ok ? "Portal home" : "Sign in", ok ? "<h1>Welcome back</h1>" : "<p>Wrong username or password</p>");
        }
        return page(
          "Sign in",
          `<form method="post" action="/login">
            <label for="username">Username</label><input id="username" name="username">
            <label for="password">Password</label><input id="password" name="password" type="password">
            <button type="submit">Sign in</button>
          </form>`,
        );
      },
    });
    loginUrl = `http://127.0.0.1:${server.port}/login`;
  });
  afterAll(() => server.stop(true));

  function page(title: string, body: string): Response {
    return new Response(`<!doctype html><html><head><title>${title}</title></head><body>${body}</body></html>`, {
      headers: { "content-type": "text/html; charset=utf-8" },
    });
  }

  async function runLogin(credentials: { username: string; password: string }) {
    const login = await loadExample("login.ts");
    const abort = new AbortController();
    const browser = createLazyBrowser({ headless: true, chromiumPath }, abort.signal);
    const { ctx, lines } = contextWith(browser.page, abort.signal);
    try {
      const input = { ...(login.input!.parse({ loginUrl }) as object), credentials };
      return { definition: login, result: await login.handler(ctx, input), lines };
    } finally {
      await browser.close();
    }
  }

  test("logs in with exactly the injected credentials and never logs them", async () => {
    submissions.length = 0;
    const { definition, result, lines } = await runLogin({ username: USERNAME, password: PASSWORD });

    expect(definition.name).toBe("portal-login");
    expect(definition.credentials).toEqual(["username", "password"]);
    expect(submissions).toHaveLength(1);
    expect(submissions[0]!.get("username")).toBe(USERNAME);
    expect(submissions[0]!.get("password")).toBe(PASSWORD);
    expect(result).toEqual({ loggedIn: true, title: "Portal home" });
    expect(lines.length).toBeGreaterThan(0);
    for (const line of lines) {
      expect(line).not.toContain(USERNAME);
      expect(line).not.toContain(PASSWORD);
    }
  }, TEST_TIMEOUT_MS);

  test("reports loggedIn false when the portal rejects the credentials", async () => {
    submissions.length = 0;
    const { result } = await runLogin({ username: USERNAME, password: "wrong" });

    expect(submissions).toHaveLength(1);
    expect(result).toEqual({ loggedIn: false, title: "Sign in" });
  }, TEST_TIMEOUT_MS);
});
