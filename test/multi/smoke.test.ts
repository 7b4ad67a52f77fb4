import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { postJson } from "../process-helpers";
import { describeWithPostgres, startCluster, type Cluster } from "./cluster";

describeWithPostgres("several instances on one PostgreSQL", () => {
  let cluster: Cluster;
  beforeAll(async () => {
    cluster = await startCluster({ instances: 3, workflowsDir: join(import.meta.dir, "..", "fixtures", "worker-workflows") });
  }, 60_000);
  afterAll(async () => cluster?.close());

  test("a credential stored through one instance is read through the others; jobs created anywhere complete", async () => {
    const [a, b, c] = cluster.instances;
    expect((await postJson(a!.url, "/v1/credentials/create", cluster.keys.alpha, { name: "shared", value: "across-instances" })).status).toBe(200);
    for (const instance of [b!, c!]) {
      const listed = await postJson(instance.url, "/v1/credentials/list", cluster.keys.alpha, {});
      expect(listed.body.credentials.map((x: { name: string }) => x.name)).toEqual(["shared"]);
    }
    const ids: string[] = [];
    for (const instance of cluster.instances) {
      const created = await postJson(instance.url, "/v1/jobs/create", cluster.keys.alpha, { workflow: "quick" });
      expect(created.status).toBe(200);
      ids.push(created.body.job_id);
    }
    for (const id of ids) {
      let status = "";
      for (let i = 0; i < 400 && !["completed", "failed"].includes(status); i++) {
        status = (await postJson(c!.url, "/v1/jobs/get", cluster.keys.alpha, { id })).body.status;
        if (status !== "completed") await Bun.sleep(25);
      }
      expect(status).toBe("completed");
    }
  }, 60_000);
});
