import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { call, waitForBuild, waitForJob } from "../e2e/serve-child";
import { tempDir } from "../helpers";
import type { ServerProcess } from "../process-helpers";
import { uploadBase64, type UploadOptions } from "../deployments/upload";
import { describeWithPostgres, startCluster, type Cluster } from "./cluster";

/**
 * Deployments across instances (issue 11): the upload is stored in the
 * database, so a deployment made through one instance runs as jobs claimed
 * by others, which unpack it on first use; a build whose instance dies is
 * taken over by another once its lease lapses.
 */

const doubler: UploadOptions = {
  workflows: [
    {
      name: "doubler",
      inputSchema: { type: "object", properties: { n: { type: "number" } } },
      body: "return { doubled: input.n * 2, from: 'the upload' };",
    },
  ],
};

const built = (server: { url: string }, key: string, id: string, timeoutMs = 45_000) => waitForBuild(server, key, id, timeoutMs);

describeWithPostgres("deployments across instances on one PostgreSQL", () => {
  let cluster: Cluster;
  let dirs: { path: string; remove(): void };
  let workflowsDir: { path: string; remove(): void };
  /** Each instance's own deployments directory, as on separate hosts. */
  const deploymentsDir = (n: number) => join(dirs.path, `instance-${n}`);
  const [a, b, c] = [0, 1, 2];
  let instances: ServerProcess[];

  beforeAll(async () => {
    dirs = tempDir("understudy-multi-deployments-");
    workflowsDir = tempDir("understudy-no-workflows-");
    // A short build lease, so a build orphaned by a SIGKILL is taken over within the test.
    cluster = await startCluster({ instances: 0, workflowsDir: workflowsDir.path, env: { UNDERSTUDY_DEPLOY_BUILD_LEASE_MS: "1500" } });
    instances = [];
    for (const n of [a, b, c]) instances.push(await cluster.addInstance({ UNDERSTUDY_DEPLOYMENTS_DIR: deploymentsDir(n) }));
  }, 90_000);

  afterAll(async () => {
    await cluster?.close();
    dirs?.remove();
    workflowsDir?.remove();
  });

  test("a deployment uploaded through A runs as jobs created through B and C (which unpack it); another tenant cannot run it", async () => {
    const { alpha, beta } = cluster.keys;
    const created = await call(instances[a]!, alpha, "/v1/deployments/create", { source: await uploadBase64(doubler), entry_point: "index.js" });
    expect(created.status, JSON.stringify(created.body)).toBe(200);
    const id: string = created.body.deployment_id;
    // The build's lifecycle is in the database: every instance sees it.
    expect((await call(instances[b]!, alpha, "/v1/deployments/get", { deployment_id: id })).body.status).toMatch(/^(building|ready)$/);
    const ready = await built(instances[c]!, alpha, id);
    expect(ready.status, JSON.stringify(ready)).toBe("ready");
    expect(ready.workflows).toEqual(["doubler"]);

    // A leaves: only B and C can claim the jobs, and neither has the files yet.
    expect(await instances[a]!.stop()).toBe(0);
    for (const n of [b, c]) expect(existsSync(join(deploymentsDir(n), cluster.tenants.alpha, id))).toBe(false);

    // Several jobs at once through each: concurrent first uses on one instance share one unpack.
    const jobs = await Promise.all(
      [b, c, b, c, b, c].map(async (n, i) => {
        const job = await call(instances[n]!, alpha, "/v1/jobs/create", { workflow: "doubler", params: { n: i } });
        expect(job.status, JSON.stringify(job.body)).toBe(200);
        return { id: job.body.job_id as string, n: i };
      }),
    );
    for (const job of jobs) {
      const done = await waitForJob(instances[b]!, alpha, job.id, { timeoutMs: 60_000 });
      expect(done.status, JSON.stringify(done)).toBe("completed");
      expect(done.result).toEqual({ doubled: job.n * 2, from: "the upload" });
      expect(done.deployment_id).toBe(id);
    }
    // Whoever ran them unpacked the deployment from the database into its own directory, once.
    const unpackedBy = [b, c].filter((n) => existsSync(join(deploymentsDir(n), cluster.tenants.alpha, id, "index.js")));
    expect(unpackedBy.length).toBeGreaterThan(0);
    for (const n of unpackedBy) {
      const logs = instances[n]!.stdout() + instances[n]!.stderr();
      expect(logs.split("deployment unpacked from the database").length - 1).toBe(1);
      // No half-written folder is left beside it.
      expect(readdirSync(join(deploymentsDir(n), cluster.tenants.alpha)).filter((f) => f.startsWith("."))).toEqual([]);
    }

    // The other tenant: not found through any instance, nothing of it listed.
    for (const n of [b, c]) {
      const refused = await call(instances[n]!, beta, "/v1/jobs/create", { workflow: "doubler", params: { n: 1 } });
      expect(refused.status).toBe(404);
      expect((await call(instances[n]!, beta, "/v1/deployments/get", { deployment_id: id })).status).toBe(404);
      expect((await call(instances[n]!, beta, "/v1/deployments/list", {})).body.deployments).toEqual([]);
    }
  }, 120_000);

  test("a build whose instance is killed mid-build does not stay building: another instance takes it over", async () => {
    const { alpha } = cluster.keys;
    const doomed = await cluster.addInstance({ UNDERSTUDY_DEPLOYMENTS_DIR: deploymentsDir(3) });
    const slow: UploadOptions = {
      workflows: [{ name: "slow-loader", body: "return { loaded: 'slowly' };" }],
      // Loading the entry point takes long enough for the kill to land mid-build.
      entryPrelude: "await new Promise((resolve) => setTimeout(resolve, 4000));",
    };
    const created = await call(doomed, alpha, "/v1/deployments/create", { source: await uploadBase64(slow), entry_point: "index.js" });
    expect(created.status, JSON.stringify(created.body)).toBe(200);
    expect(created.body.status).toBe("building");
    doomed.child.kill("SIGKILL");
    await doomed.child.exited;
    expect((await call(instances[b]!, alpha, "/v1/deployments/get", { deployment_id: created.body.deployment_id })).body.status).toBe("building");
    const ended = await built(instances[c]!, alpha, created.body.deployment_id, 60_000);
    expect(ended.status, JSON.stringify(ended)).toBe("ready");
    expect(ended.workflows).toEqual(["slow-loader"]);
    const job = await call(instances[b]!, alpha, "/v1/jobs/create", { workflow: "slow-loader" });
    expect(job.status).toBe(200);
    const done = await waitForJob(instances[c]!, alpha, job.body.job_id, { timeoutMs: 60_000 });
    expect(done.status, JSON.stringify(done)).toBe("completed");
    expect(done.result).toEqual({ loaded: "slowly" });
  }, 120_000);
});
