/**
 * What a client gets when the request itself is broken, over raw sockets, on
 * both runtimes: Bun.serve (an in-process test server) and Node (`node
 * understudy.mjs serve`, the bundle built into a temp directory).
 *
 * - A body past the limits gets the app's JSON 413 on both.
 * - The HTTP parser's refusals (oversized headers, broken framing, a bad
 *   version or request line, no Host) get the JSON error body under Node.
 *   Under Bun they cannot (src/server/listen.ts says why): the best there is
 *   Bun's status line, Connection: close, and the connection closed; never
 *   a hang.
 * - A client that disconnects mid-body is counted as 499, logged as a
 *   request (info), never as an error or a 500.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Subprocess } from "bun";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { buildAll, ROOT } from "../../scripts/build";
import { startTestServer, type TestServer } from "../helpers";
import { freePort } from "../process-helpers";
import { rawAnswer, rawGet, rawHead, rawRequest, type RawAnswer } from "./raw";

/** Both servers: deploy uploads limited to 1000 bytes, so the largest body limit is UNDERSTUDY_MAX_BODY_BYTES (1 MiB). */
const ENV = { UNDERSTUDY_MAX_DEPLOY_BYTES: "1000", UNDERSTUDY_RATE_LIMIT_PER_SECOND: "0" };
const LIMIT = 1024 * 1024;

interface Target {
  url: string;
  key: string;
  /** Every log line the server wrote so far. */
  logs(): string[];
}

interface ParserCase {
  why: string;
  request(key: string): string;
  status: number;
  code: string;
}

const PARSER_CASES: ParserCase[] = [
  {
    why: "a header section of 70 KB",
    request: () => `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(70_000)}\r\n\r\n`,
    status: 431,
    code: "REQUEST_HEADER_FIELDS_TOO_LARGE",
  },
  {
    why: "broken chunked framing",
    request: (key) => `POST /v1/credentials/list HTTP/1.1\r\nHost: x\r\nx-api-key: ${key}\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nabc\r\n0\r\n\r\n`,
    status: 400,
    code: "BAD_REQUEST",
  },
  { why: "HTTP/9.9", request: () => `GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n`, status: 505, code: "HTTP_VERSION_NOT_SUPPORTED" },
  { why: "a request line that is not one", request: () => "GARBAGE\r\n\r\n", status: 400, code: "BAD_REQUEST" },
  { why: "a header name with a space", request: () => `GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n`, status: 400, code: "BAD_REQUEST" },
  {
    why: "Content-Length with Transfer-Encoding",
    request: () => `POST /v1/credentials/list HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
    status: 400,
    code: "BAD_REQUEST",
  },
  { why: "a Content-Length that is not a number", request: () => `POST /v1/credentials/list HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n`, status: 400, code: "BAD_REQUEST" },
  { why: "an HTTP/1.1 request without Host", request: () => `GET /healthz HTTP/1.1\r\n\r\n`, status: 400, code: "BAD_REQUEST" },
];

function expectJsonError(answer: RawAnswer, status: number, code: string) {
  if (answer.status !== status) throw new Error(`expected ${status} ${code}, got: ${answer.raw.slice(0, 300)}`);
  expect(answer.headers["content-type"]).toContain("application/json");
  expect(Number(answer.headers["content-length"])).toBe(answer.body.length);
  const error = JSON.parse(answer.body.toString("utf8"));
  expect(Object.keys(error).sort()).toEqual(["code", "data", "defined", "message", "status", "success"]);
  expect(error).toMatchObject({ defined: false, success: false, code, status });
  expect(error.message.length).toBeGreaterThan(8);
  return error;
}

const requestsTotal = async (url: string, route: string, status: string): Promise<number> => {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`understudy_http_requests_total{route="${route}",method="POST",status="${status}"} `));
  return line ? Number(line.split(" ").pop()) : 0;
};

/** The checks both runtimes share; `runtime` says what its parser can do. */
function transportSuite(runtime: "bun" | "node", target: () => Target) {
  test("a 3 MB body (past twice the largest limit, where Bun's own limit used to answer) gets the app's JSON 413", async () => {
    const { url, key } = target();
    const body = `{"name":"big","value":"${"v".repeat(3 * 1024 * 1024)}"}`;
    const answer = await rawAnswer(url, `POST /v1/credentials/upsert HTTP/1.1\r\nHost: x\r\nx-api-key: ${key}\r\ncontent-type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
    const error = expectJsonError(answer, 413, "PAYLOAD_TOO_LARGE");
    expect(error.data).toEqual({ limit_bytes: LIMIT });
  });

  test("a declared Content-Length of 1 TiB gets the app's JSON 413 at once", async () => {
    const { url, key } = target();
    const answer = await rawAnswer(url, `POST /v1/credentials/upsert HTTP/1.1\r\nHost: x\r\nx-api-key: ${key}\r\nContent-Length: ${2 ** 40}\r\n\r\n{"name"`);
    expectJsonError(answer, 413, "PAYLOAD_TOO_LARGE");
  });

  for (const c of PARSER_CASES) {
    const what = runtime === "node" ? `a JSON ${c.status} ${c.code}` : `Bun's bare ${c.status}, then the connection closes`;
    test(`${c.why}: ${what}`, async () => {
      const { url, key } = target();
      const answer = await rawRequest(url, c.request(key), { waitMs: 5000 });
      expect(answer.closed).toBe(true);
      if (runtime === "node") {
        expectJsonError(answer, c.status, c.code);
      } else {
        // Bun's parser answered before any code of ours ran (see src/server/listen.ts).
        expect(answer.status).toBe(c.status);
        expect(answer.headers.connection?.toLowerCase()).toBe("close");
        expect(answer.body.length).toBe(0);
      }
    });
  }

  test("an HTTP/1.0 request without Host is routed like any other", async () => {
    const answer = await rawRequest(target().url, "GET /healthz HTTP/1.0\r\n\r\n");
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.body.toString("utf8"))).toEqual({ status: "ok" });
  });

  test("a client that disconnects mid-body is counted as 499 and logged as a request, not as an error or a 500", async () => {
    const { url, key, logs } = target();
    const route = "/v1/credentials/create";
    const before = { aborted: await requestsTotal(url, route, "499"), failed: await requestsTotal(url, route, "500") };
    const logged = logs().length;
    await rawRequest(url, `POST ${route} HTTP/1.1\r\nHost: x\r\nx-api-key: ${key}\r\ncontent-type: application/json\r\nContent-Length: 1000\r\n\r\n{"name":"cut`, {
      // A head start for the server to begin reading the body; then the client goes away.
      then: (socket) => void setTimeout(() => socket.destroy(), 200),
    });
    let aborted = before.aborted;
    for (let i = 0; i < 100 && aborted === before.aborted; i++) {
      await Bun.sleep(50);
      aborted = await requestsTotal(url, route, "499");
    }
    expect(aborted).toBe(before.aborted + 1);
    expect(await requestsTotal(url, route, "500")).toBe(before.failed);
    const lines = logs().slice(logged).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.filter((l) => l.level === "error")).toEqual([]);
    expect(lines.filter((l) => l.msg === "request" && l.path === route)).toMatchObject([{ level: "info", status: 499 }]);
  });

  test("HEAD carries the GET's Content-Length, and openapi.json comes back gzip'd when asked", async () => {
    const { url } = target();
    const { head, next } = await rawHead(url, "/healthz");
    expect(head.headers["content-length"]).toBe("15");
    expect(next.startsWith("HTTP/1.1 200")).toBe(true);
    const plain = await rawGet(url, "/v1/openapi.json");
    const gzipped = await rawGet(url, "/v1/openapi.json", { headers: { "accept-encoding": "gzip" } });
    expect(gzipped.headers["content-encoding"]).toBe("gzip");
    expect(Number(gzipped.headers["content-length"])).toBe(gzipped.body.length);
    expect(JSON.parse(gunzipSync(gzipped.body).toString("utf8"))).toEqual(JSON.parse(plain.body.toString("utf8")));
  });
}

describe("under Bun (Bun.serve)", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ env: ENV });
  });
  afterAll(async () => server.close());
  transportSuite("bun", () => ({ url: server.url, key: server.keys.alpha, logs: () => server.logs }));
});

describe("under Node (node understudy.mjs serve)", () => {
  let work = "";
  let child: Subprocess | undefined;
  let target: Target;
  const stdout: string[] = [];

  beforeAll(async () => {
    const node = Bun.which("node");
    if (!node) throw new Error("node is not on PATH; the Node path cannot be tested");
    work = mkdtempSync(join(tmpdir(), "understudy-transport-"));
    const built = await buildAll(join(work, "out"), { targets: ["node"] });
    const dir = join(work, "run");
    mkdirSync(dir);
    copyFileSync(built.nodeBundle!.path, join(dir, "understudy.mjs"));
    symlinkSync(join(ROOT, "node_modules"), join(dir, "node_modules"), "dir");
    const dbPath = join(dir, "data", "understudy.db");
    const env = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: dir };
    const run = (...args: string[]) => {
      const result = Bun.spawnSync([node, join(dir, "understudy.mjs"), ...args], { cwd: dir, env, stdout: "pipe", stderr: "pipe", timeout: 15_000 });
      if (result.exitCode !== 0) throw new Error(`understudy ${args.join(" ")} failed: ${result.stderr.toString()}`);
      return result.stdout.toString().trim();
    };
    const masterKey = run("keygen");
    run("tenants", "create", "acme", "--db", dbPath);
    const key = run("keys", "create", "--tenant", "acme", "--db", dbPath);
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    child = Bun.spawn([node, join(dir, "understudy.mjs"), "serve"], {
      cwd: dir,
      env: { ...env, ...ENV, UNDERSTUDY_MASTER_KEY: masterKey, UNDERSTUDY_DB: dbPath, UNDERSTUDY_LISTEN: `127.0.0.1:${port}` },
      stdout: "pipe",
      stderr: "pipe",
    });
    void (async () => {
      let rest = "";
      for await (const chunk of child.stdout as ReadableStream<Uint8Array>) {
        rest += new TextDecoder().decode(chunk);
        const lines = rest.split("\n");
        rest = lines.pop()!;
        stdout.push(...lines.filter((l) => l.startsWith("{")));
      }
    })();
    void new Response(child.stderr as ReadableStream<Uint8Array>).text();
    for (let i = 0; ; i++) {
      try {
        if ((await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(500) })).status === 200) break;
      } catch {
        // not listening yet
      }
      if (i === 200 || child.exitCode !== null) throw new Error("node understudy.mjs serve did not become healthy");
      await Bun.sleep(50);
    }
    target = { url, key, logs: () => stdout };
  }, 60_000);

  afterAll(async () => {
    if (child && child.exitCode === null) {
      child.kill("SIGKILL");
      await child.exited;
    }
    if (work) rmSync(work, { recursive: true, force: true });
  });

  transportSuite("node", () => target);
});

