/**
 * Log redaction through a real job (issue 9, item 1): a handler logs its
 * injected value in each form the redactor must catch
 * (test/fixtures/worker-workflows/log-forms.ts, the same file a worker runs
 * in test/worker/redaction.test.ts), and no line that logs/list returns or
 * that the database holds has the value in any form.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { workflow } from "../../src/workflows/define";
import { loadWorkflowFile } from "../../src/workflows/load";
import { addTenant, startTestServer, uniqueName, type TestServer } from "../helpers";
import { expectOk } from "../http/wire";
import { awkwardValue, logFormsFindings } from "../runner/value-forms";
import { createJob, FAST_ENV, jobLogs, waitForEnd } from "./support";

let server: TestServer;
beforeAll(async () => {
  const workflows = await loadWorkflowFile(join(import.meta.dir, "..", "fixtures", "worker-workflows", "log-forms.ts"));
  // Logs one line, waits, and returns the time after it: the line is held by
  // the redactor (a value is injected) until the job ends.
  const held = workflow("held-line", {
    credentials: ["api_token"],
    async handler(ctx) {
      ctx.log.info("a line written before the wait");
      await new Promise((resolve) => setTimeout(resolve, 50));
      return { after: new Date().toISOString() };
    },
  });
  server = await startTestServer({ workflows: [...workflows, held], env: FAST_ENV });
});
afterAll(async () => server.close());

test("a value logged as base64 behind a prefix, through util.inspect, as JSON with \\u escapes, in three or more writes, and as hex is stored only as [REDACTED:name]", async () => {
  const tenant = await addTenant(server, uniqueName("tenant"));
  const value = awkwardValue(crypto.randomUUID());
  expectOk(await server.post("/v1/credentials/create", { name: "api_token", value }, { key: tenant.key }), false);
  const id = await createJob(server, { workflow: "log-forms", params: {} }, tenant.key);
  const job = await waitForEnd(server, id, tenant.key);
  expect(job.status).toBe("completed");

  const messages = (await jobLogs(server, id, tenant.key)).map((line) => line.message as string);
  const stored = (await server.db.selectFrom("job_logs").select("message").where("job_id", "=", id).orderBy("id").execute()).map((row) => row.message);
  expect(stored).toEqual(messages);
  expect(logFormsFindings(messages, value, "api_token")).toEqual({ leaked: [], unredacted: [] });
});

test("a line held by the redactor keeps the time it was written at, not the time it was released", async () => {
  const tenant = await addTenant(server, uniqueName("tenant"));
  expectOk(await server.post("/v1/credentials/create", { name: "api_token", value: awkwardValue(crypto.randomUUID()) }, { key: tenant.key }), false);
  const id = await createJob(server, { workflow: "held-line", params: {} }, tenant.key);
  const job = await waitForEnd(server, id, tenant.key);
  expect(job.status).toBe("completed");
  const [line] = await jobLogs(server, id, tenant.key);
  expect(line.message).toBe("a line written before the wait");
  // Released only when the job ended, after `after` was taken; written before it.
  expect(Date.parse(line.timestamp)).toBeLessThan(Date.parse((job.result as { after: string }).after));
});
