/**
 * The job runner with three instances on one PostgreSQL (issue 11): every
 * job runs exactly once, spread over the instances; a cancel reaches the
 * instance that runs the job; a credential's delete through one instance
 * sees the reference a job running on another holds.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "../helpers";
import { postJson } from "../process-helpers";
import { describeWithPostgres, startCluster, type Cluster } from "./cluster";

const WORKFLOWS = join(import.meta.dir, "..", "fixtures", "runner-workflows");

describeWithPostgres("the job runner on three instances", () => {
  let cluster: Cluster;
  const dir = tempDir("understudy-runner-multi-");
  beforeAll(async () => {
    // Handlers in the server processes: the pid a job answers with is its instance's.
    cluster = await startCluster({ instances: 3, workflowsDir: WORKFLOWS, env: { UNDERSTUDY_WORKFLOW_ISOLATION: "none", UNDERSTUDY_CONCURRENCY: "8" } });
  }, 60_000);
  afterAll(async () => {
    await cluster?.close();
    dir.remove();
  });

  /** The instance whose runner holds the job's lease (each logs its lease name at start). */
  const ownerOf = async (id: string) => {
    const row = await cluster.store.db.selectFrom("jobs").select("lease_owner").where("id", "=", id).executeTakeFirstOrThrow();
    const owner = cluster.instances.find((i) => row.lease_owner && i.stdout().includes(`"instance_id":"${row.lease_owner}"`));
    expect(owner).toBeDefined();
    return owner!;
  };

  const statusCounts = async () => {
    const rows = await cluster.store.db.selectFrom("jobs").select("status").select((eb) => eb.fn.countAll<number>().as("n")).groupBy("status").execute();
    return Object.fromEntries(rows.map((r) => [r.status, Number(r.n)]));
  };

  const waitFor = async (id: string, via: string, key: string, done: (status: string) => boolean, rounds = 400) => {
    let body: any;
    for (let i = 0; i < rounds; i++) {
      body = (await postJson(via, "/v1/jobs/get", key, { id })).body;
      if (done(body.status)) return body;
      await Bun.sleep(25);
    }
    return body;
  };

  test("3,000 jobs created through the three instances each run exactly once, on all of them", async () => {
    const file = join(dir.path, "runs.txt");
    const ids: string[] = [];
    // Ten clients at a time, round-robin over the instances and both tenants.
    for (let batch = 0; batch < 300; batch++) {
      const created = await Promise.all(
        Array.from({ length: 10 }, async (_, k) => {
          const n = batch * 10 + k;
          const instance = cluster.instances[n % 3]!;
          const key = n % 2 === 0 ? cluster.keys.alpha : cluster.keys.beta;
          return postJson(instance.url, "/v1/jobs/create", key, { workflow: "record", params: { file, tag: `job-${n}` } });
        }),
      );
      for (const c of created) {
        expect(c.status).toBe(200);
        ids.push(c.body.job_id);
      }
    }
    expect(new Set(ids).size).toBe(3000);
    let counts: Record<string, number> = {};
    for (let i = 0; i < 600; i++) {
      counts = await statusCounts();
      if ((counts.completed ?? 0) === 3000) break;
      await Bun.sleep(50);
    }
    expect(counts).toEqual({ completed: 3000 });
    const lines = readFileSync(file, "utf8").trim().split("\n");
    const tags = lines.map((l) => l.split(" ")[0]);
    expect(lines.length).toBe(3000);
    expect(new Set(tags).size).toBe(3000);
    const byPid = new Map<string, number>();
    for (const line of lines) byPid.set(line.split(" ")[1]!, (byPid.get(line.split(" ")[1]!) ?? 0) + 1);
    const pids = cluster.instances.map((i) => String(i.child.pid));
    expect([...byPid.keys()].sort()).toEqual(pids.sort());
    console.log(`NOTE: runs per instance: ${[...byPid.values()].join(", ")}`);
  }, 120_000);

  test("a cancel sent through one instance stops the job another instance runs", async () => {
    // Six slow jobs, two created through each instance; each is cancelled
    // through an instance other than the one that runs it.
    const ids: string[] = [];
    for (const instance of [...cluster.instances, ...cluster.instances]) {
      const created = await postJson(instance.url, "/v1/jobs/create", cluster.keys.alpha, { workflow: "slow", params: { ms: 60_000 } });
      expect(created.status).toBe(200);
      ids.push(created.body.job_id);
    }
    const [a] = cluster.instances;
    for (const id of ids) expect((await waitFor(id, a!.url, cluster.keys.alpha, (s) => s === "running")).status).toBe("running");
    for (const id of ids) {
      const owner = await ownerOf(id);
      const via = cluster.instances.find((i) => i !== owner)!;
      const sent = Date.now();
      const cancelled = await postJson(via.url, "/v1/jobs/cancel", cluster.keys.alpha, { id });
      expect(cancelled.status).toBe(200);
      expect(cancelled.body.message).toBe(`Job ${id} is being cancelled; it ends within the grace period.`);
      const ended = await waitFor(id, via.url, cluster.keys.alpha, (s) => !["queued", "running", "starting_browser"].includes(s), 200);
      expect(ended.status).toBe("cancelled");
      expect(ended.failure_class).toBe("cancelled");
      // Well inside the 15 s lease renewal: the NOTIFY reached the owner.
      expect(Date.now() - sent).toBeLessThan(3000);
    }
  }, 60_000);

  test("a credential's delete through one instance is a 409 while another instance runs a job that holds it, and succeeds after", async () => {
    const [one, two] = cluster.instances;
    const stored = await postJson(one!.url, "/v1/credentials/create", cluster.keys.beta, { name: "shared", value: "held-across-instances" });
    expect(stored.status).toBe(200);
    const credentialId = stored.body.credential_id;
    const created = await postJson(two!.url, "/v1/jobs/create", cluster.keys.beta, { workflow: "slow-credential" });
    expect(created.status).toBe(200);
    const id = created.body.job_id;
    expect((await waitFor(id, two!.url, cluster.keys.beta, (s) => s === "running")).status).toBe("running");
    // Through an instance that does not run the job: only the database tells it about the reference.
    const owner = await ownerOf(id);
    const other = cluster.instances.find((i) => i !== owner)!;
    const refused = await postJson(other.url, "/v1/credentials/delete", cluster.keys.beta, { id: credentialId });
    expect(refused.status).toBe(409);
    expect((await postJson(other.url, "/v1/credentials/list", cluster.keys.beta, {})).body.credentials.map((c: { name: string }) => c.name)).toEqual(["shared"]);
    expect((await postJson(other.url, "/v1/jobs/cancel", cluster.keys.beta, { id })).status).toBe(200);
    expect((await waitFor(id, other.url, cluster.keys.beta, (s) => s === "cancelled")).status).toBe("cancelled");
    const deleted = await postJson(other.url, "/v1/credentials/delete", cluster.keys.beta, { id: credentialId });
    expect(deleted.status).toBe(200);
  }, 60_000);

  test("nothing is left running", async () => {
    const counts = await statusCounts();
    expect(counts.running ?? 0).toBe(0);
    expect(counts.queued ?? 0).toBe(0);
  });
});
