import { afterAll, beforeAll, expect, test } from "bun:test";
import { call, waitForJob } from "../e2e/serve-child";
import { decodePng, PNG_SIGNATURE } from "../artifacts/png";
import { describeWithChromium } from "../chromium";
import { workerScope } from "./process-tree";

// Job artifacts in the default mode: the handler runs in a worker process,
// which takes the screenshot and sends it to the server over the protocol
// (src/worker/protocol.ts "artifact"); the server keeps it per tenant.

const scope = workerScope();
const SECRET = "worker-typed-secret-value";
let site: ReturnType<typeof Bun.serve>;
let base: string;

beforeAll(() => {
  site = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch: () =>
      new Response(
        `<!doctype html><body style="margin:0;background:#fff">
<input id="pw" type="password" style="position:absolute;left:10px;top:10px;width:200px;height:40px;border:0">
<input id="echo" type="text" style="position:absolute;left:10px;top:70px;width:200px;height:40px;border:0"></body>`,
        { headers: { "content-type": "text/html" } },
      ),
  });
  base = `http://127.0.0.1:${site.port}/`;
});
afterAll(async () => {
  site.stop(true);
  await scope.cleanup();
});

describeWithChromium("job artifacts from a worker process", (chromiumPath) => {
  test("a failing job's screenshot, a completed job's masked final one, a timed-out job's, and another tenant's 404", async () => {
    const deployment = scope.deployment({ UNDERSTUDY_CHROMIUM_PATH: chromiumPath, UNDERSTUDY_JOB_GRACE_MS: "5000" });
    const key = await deployment.addTenant("acme");
    const other = await deployment.addTenant("other");
    const server = await scope.start(deployment);
    const run = async (params: object, options: object = {}) => {
      const created = await call(server, key, "/v1/jobs/create", { workflow: "artifact-page", params, ...options });
      expect(created.status).toBe(200);
      return waitForJob(server, key, created.body.job_id, { timeoutMs: 30_000 });
    };
    const artifacts = async (jobId: string, as = key) => call(server, as, "/v1/jobs/artifacts", { id: jobId });
    const png = async (artifactId: string) => {
      const got = await call(server, key, "/v1/artifacts/download", { id: artifactId });
      expect(got.status).toBe(200);
      return new Uint8Array(Buffer.from(got.body.data, "base64"));
    };

    const failed = await run({ url: base, fail: true }, { viewport: { width: 500, height: 300 } });
    expect(failed.status).toBe("failed");
    const listed = await artifacts(failed.job_id);
    expect(listed.status).toBe(200);
    expect(listed.body.artifacts.map((a: any) => a.kind)).toEqual(["screenshot"]);
    const shot = await png(listed.body.artifacts[0].artifact_id);
    expect([...shot.subarray(0, 8)]).toEqual(PNG_SIGNATURE);
    const decoded = decodePng(shot);
    expect([decoded.width, decoded.height]).toEqual([500, 300]);
    expect((await artifacts(failed.job_id, other)).status).toBe(404);
    expect((await call(server, other, "/v1/artifacts/download", { id: listed.body.artifacts[0].artifact_id })).status).toBe(404);

    expect((await call(server, key, "/v1/credentials/create", { name: "password", value: SECRET })).status).toBe(200);
    const completed = await run({ url: base });
    expect(completed.status).toBe("completed");
    const final = (await artifacts(completed.job_id)).body.artifacts;
    expect(final.map((a: any) => a.kind)).toEqual(["screenshot"]);
    const masked = decodePng(await png(final[0].artifact_id));
    for (const box of [completed.result.pw, completed.result.echo]) {
      const colours = new Set<string>();
      for (let y = Math.ceil(box.y) + 2; y < box.y + box.height - 2; y += 3) {
        for (let x = Math.ceil(box.x) + 2; x < box.x + box.width - 2; x += 3) colours.add(masked.pixel(x, y).slice(0, 3).join(","));
      }
      expect([...colours]).toEqual(["0,0,0"]);
    }

    // A timeout stops the handler; what the page showed then is kept.
    const timedOut = await run({ url: base, hang: true }, { timeout_seconds: 5 });
    expect(timedOut.failure_class).toBe("timeout");
    expect((await artifacts(timedOut.job_id)).body.artifacts.map((a: any) => a.kind)).toEqual(["screenshot"]);
  }, 90_000);
});
