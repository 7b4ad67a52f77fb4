import { afterAll, beforeAll, expect, test } from "bun:test";
import { workflow } from "../../src/workflows/define";
import { describeWithChromium } from "../chromium";
import { startTestServer, type TestServer } from "../helpers";
import { expectError, expectOk } from "../http/wire";
import { createJob, FAST_ENV, jobLogs, waitForEnd } from "../jobs/support";
import { decodePng, PNG_SIGNATURE } from "./png";

// What a browser job leaves to look at (README "Job artifacts"), in-process
// (UNDERSTUDY_WORKFLOW_ISOLATION=none, as startTestServer runs): a failing
// job's screenshot, a completed job's final one, masked credential inputs,
// a trace on request, and each tenant seeing only its own.

const SECRET = "hunter2-very-secret-password";
let site: ReturnType<typeof Bun.serve>;
let base: string;

const PAGE = `<!doctype html><html><body style="margin:0;background:#fff">
<input id="pw" type="password" style="position:absolute;left:10px;top:10px;width:200px;height:40px;background:#fff;border:0">
<input id="echo" type="text" style="position:absolute;left:10px;top:70px;width:200px;height:40px;background:#fff;border:0">
<input id="plain" type="text" style="position:absolute;left:10px;top:130px;width:200px;height:40px;background:#fff;border:0">
</body></html>`;

beforeAll(() => {
  site = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response(PAGE, { headers: { "content-type": "text/html" } }) });
  base = `http://127.0.0.1:${site.port}/`;
});
afterAll(() => site.stop(true));

const workflows = [
  workflow("art-fails", {
    async handler(ctx, input: { url: string }) {
      await ctx.page.goto(input.url);
      throw new Error("the login button was not there");
    },
  }),
  workflow("art-completes", {
    async handler(ctx, input: { url: string }) {
      await ctx.page.goto(input.url);
      return { title: await ctx.page.title() };
    },
  }),
  workflow("art-hangs", {
    async handler(ctx, input: { url: string }) {
      await ctx.page.goto(input.url);
      await new Promise(() => {});
    },
  }),
  workflow("art-no-page", {
    async handler() {
      throw new Error("failed before any page");
    },
  }),
  workflow("art-masks", {
    credentials: ["password"],
    async handler(ctx, input: { url: string; credentials: { password: string } }) {
      const { page } = ctx;
      await page.goto(input.url);
      await page.fill("#pw", input.credentials.password);
      await page.fill("#echo", input.credentials.password);
      await page.fill("#plain", "WWWWWWWWWWWWWWWWWWWW");
      const box = async (selector: string) => (await page.locator(selector).boundingBox())!;
      return { pw: await box("#pw"), echo: await box("#echo"), plain: await box("#plain") };
    },
  }),
];

async function artifactsOf(server: TestServer, jobId: string, key = server.keys.alpha) {
  return expectOk(await server.post("/v1/jobs/artifacts", { id: jobId }, { key }), false).artifacts as any[];
}

async function download(server: TestServer, id: string): Promise<Uint8Array> {
  const output = expectOk(await server.post("/v1/artifacts/download", { id }), false);
  expect(output.encoding).toBe("base64");
  const bytes = new Uint8Array(Buffer.from(output.data, "base64"));
  expect(bytes.byteLength).toBe(output.size_bytes);
  return bytes;
}

describeWithChromium("job artifacts (in-process)", (chromium) => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ workflows, env: { ...FAST_ENV, UNDERSTUDY_CHROMIUM_PATH: chromium } });
  });
  afterAll(() => server.close());

  test("a failing browser job keeps a PNG screenshot of its viewport; another tenant gets 404 for the list and the download", async () => {
    const id = await createJob(server, { workflow: "art-fails", params: { url: base }, viewport: { width: 640, height: 360 } });
    const job = await waitForEnd(server, id);
    expect(job.status).toBe("failed");
    const artifacts = await artifactsOf(server, id);
    expect(artifacts).toEqual([
      {
        artifact_id: expect.any(String),
        job_id: id,
        kind: "screenshot",
        content_type: "image/png",
        size_bytes: expect.any(Number),
        created_at: expect.any(String),
        download: { path: "/v1/artifacts/download", body: { id: artifacts[0].artifact_id } },
      },
    ]);
    const png = await download(server, artifacts[0].artifact_id);
    expect([...png.subarray(0, 8)]).toEqual(PNG_SIGNATURE);
    const decoded = decodePng(png);
    expect({ width: decoded.width, height: decoded.height }).toEqual({ width: 640, height: 360 });

    expectError(await server.post("/v1/jobs/artifacts", { id }, { key: server.keys.beta }), 404, "NOT_FOUND", false);
    const betaDownload = await server.post("/v1/artifacts/download", { id: artifacts[0].artifact_id }, { key: server.keys.beta });
    expectError(betaDownload, 404, "NOT_FOUND", false);
    expect(betaDownload.text).not.toContain(Buffer.from(png).toString("base64").slice(0, 64));
  });

  test("a completed browser job keeps its final screenshot; a job that never used its page keeps none", async () => {
    const id = await createJob(server, { workflow: "art-completes", params: { url: base } });
    expect((await waitForEnd(server, id)).status).toBe("completed");
    const [shot, ...rest] = await artifactsOf(server, id);
    expect(rest).toEqual([]);
    expect(shot.kind).toBe("screenshot");
    const decoded = decodePng(await download(server, shot.artifact_id));
    expect({ width: decoded.width, height: decoded.height }).toEqual({ width: 1280, height: 720 });

    const none = await createJob(server, { workflow: "art-no-page", params: {} });
    expect((await waitForEnd(server, none)).status).toBe("failed");
    expect(await artifactsOf(server, none)).toEqual([]);
  });

  test("a job that timed out keeps what its page showed at the stop", async () => {
    const id = await createJob(server, { workflow: "art-hangs", params: { url: base }, timeout_seconds: 4 });
    const job = await waitForEnd(server, id);
    expect(job.failure_class).toBe("timeout");
    const [shot, ...rest] = await artifactsOf(server, id);
    expect(rest).toEqual([]);
    expect(decodePng(await download(server, shot.artifact_id)).width).toBe(1280);
  });

  test("inputs holding a credential value, and password inputs, are masked with solid black; other inputs are not", async () => {
    expectOk(await server.post("/v1/credentials/create", { name: "password", value: SECRET }), false);
    const id = await createJob(server, { workflow: "art-masks", params: { url: base } });
    const job = await waitForEnd(server, id);
    expect(job.status).toBe("completed");
    const [shot] = await artifactsOf(server, id);
    const png = decodePng(await download(server, shot.artifact_id));
    const pixels = (box: { x: number; y: number; width: number; height: number }) => {
      const seen = new Set<string>();
      for (let y = Math.ceil(box.y) + 2; y < box.y + box.height - 2; y += 3) {
        for (let x = Math.ceil(box.x) + 2; x < box.x + box.width - 2; x += 3) seen.add(png.pixel(x, y).slice(0, 3).join(","));
      }
      return [...seen];
    };
    expect(pixels(job.result.pw)).toEqual(["0,0,0"]);
    expect(pixels(job.result.echo)).toEqual(["0,0,0"]);
    // The plain input shows its text: more than one colour, and not the mask.
    expect(pixels(job.result.plain).length).toBeGreaterThan(1);
    expect(pixels(job.result.plain)).toContain("255,255,255");
  });

  test("with trace: true, the job also keeps a Playwright trace (a zip)", async () => {
    const id = await createJob(server, { workflow: "art-fails", params: { url: base }, trace: true });
    expect((await waitForEnd(server, id)).status).toBe("failed");
    const artifacts = await artifactsOf(server, id);
    expect(artifacts.map((a) => [a.kind, a.content_type])).toEqual([
      ["screenshot", "image/png"],
      ["trace", "application/zip"],
    ]);
    const zip = await download(server, artifacts[1].artifact_id);
    expect(Buffer.from(zip.subarray(0, 4)).toString("latin1")).toBe("PK\x03\x04");
  });

  test("a job given credential values keeps no trace (it would record them in clear), and its log says why", async () => {
    await server.post("/v1/credentials/create", { name: "password", value: SECRET });
    const id = await createJob(server, { workflow: "art-masks", params: { url: base }, trace: true });
    expect((await waitForEnd(server, id)).status).toBe("completed");
    expect((await artifactsOf(server, id)).map((a) => a.kind)).toEqual(["screenshot"]);
    const logs = await jobLogs(server, id);
    expect(logs.map((l) => l.message)).toContainEqual(expect.stringContaining("No trace was kept"));
    const stored = await server.db.selectFrom("job_artifacts").select("bytes").where("job_id", "=", id).execute();
    for (const row of stored) expect(Buffer.from(row.bytes).includes(SECRET)).toBe(false);
  });
});

describeWithChromium("job artifacts, configured off", (chromium) => {
  test("UNDERSTUDY_SCREENSHOTS=failure keeps no final screenshot; never keeps none at all", async () => {
    for (const [setting, expected] of [
      ["failure", { completes: 0, fails: 1 }],
      ["never", { completes: 0, fails: 0 }],
    ] as const) {
      const server = await startTestServer({ workflows, env: { ...FAST_ENV, UNDERSTUDY_CHROMIUM_PATH: chromium, UNDERSTUDY_SCREENSHOTS: setting } });
      try {
        const completes = await createJob(server, { workflow: "art-completes", params: { url: base } });
        const fails = await createJob(server, { workflow: "art-fails", params: { url: base } });
        await waitForEnd(server, completes);
        await waitForEnd(server, fails);
        expect({ completes: (await artifactsOf(server, completes)).length, fails: (await artifactsOf(server, fails)).length }).toEqual(expected);
      } finally {
        await server.close();
      }
    }
  }, 30_000);

  test("a screenshot over UNDERSTUDY_ARTIFACT_MAX_BYTES is a log line instead; a tenant over its cap keeps its newest artifacts only", async () => {
    const small = await startTestServer({ workflows, env: { ...FAST_ENV, UNDERSTUDY_CHROMIUM_PATH: chromium, UNDERSTUDY_ARTIFACT_MAX_BYTES: "100" } });
    try {
      const id = await createJob(small, { workflow: "art-fails", params: { url: base } });
      expect((await waitForEnd(small, id)).status).toBe("failed");
      expect(await artifactsOf(small, id)).toEqual([]);
      expect((await jobLogs(small, id)).map((l) => l.message)).toContainEqual(expect.stringContaining("UNDERSTUDY_ARTIFACT_MAX_BYTES"));
    } finally {
      await small.close();
    }
    // A cap that holds one screenshot (~5-30 KB of a blank page) but not two.
    const capped = await startTestServer({ workflows, env: { ...FAST_ENV, UNDERSTUDY_CHROMIUM_PATH: chromium, UNDERSTUDY_ARTIFACT_MAX_BYTES_PER_TENANT: "60000" } });
    try {
      const first = await createJob(capped, { workflow: "art-fails", params: { url: base } });
      await waitForEnd(capped, first);
      const firstShots = await artifactsOf(capped, first);
      expect(firstShots.length).toBe(1);
      expect(firstShots[0].size_bytes).toBeLessThan(60000);
      const second = await createJob(capped, { workflow: "art-fails", params: { url: base } });
      await waitForEnd(capped, second);
      if (firstShots[0].size_bytes * 2 > 60000) {
        expect(await artifactsOf(capped, first)).toEqual([]);
        expect((await artifactsOf(capped, second)).length).toBe(1);
      }
      const total = await capped.db.selectFrom("job_artifacts").select("size_bytes").execute();
      expect(total.reduce((sum, r) => sum + r.size_bytes, 0)).toBeLessThanOrEqual(60000);
    } finally {
      await capped.close();
    }
  }, 30_000);
});
