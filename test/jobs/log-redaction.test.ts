/**
 * Log redaction through a real job (issue 9, item 1): a handler logs its
 * injected value in each form the redactor must catch
 * (test/fixtures/worker-workflows/log-forms.ts, the same file a worker runs
 * in test/worker/redaction.test.ts), and no line that logs/list returns or
 * that the database holds has the value in any form.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { loadWorkflowFile } from "../../src/workflows/load";
import { addTenant, startTestServer, uniqueName, type TestServer } from "../helpers";
import { expectOk } from "../http/wire";
import { leakedForm } from "../runner/value-forms";
import { createJob, FAST_ENV, jobLogs, waitForEnd } from "./support";

/** Every kind of character an encoder escapes: quotes, a backslash, a line break, a tab, U+2028, non-ASCII, an emoji. */
export const AWKWARD_VALUE = (id: string) => `tok-${id}-'q'"dq"\\bs\nnl\ttab\u2028ls-pässwort-€-😀`;

let server: TestServer;
beforeAll(async () => {
  const workflows = await loadWorkflowFile(join(import.meta.dir, "..", "fixtures", "worker-workflows", "log-forms.ts"));
  server = await startTestServer({ workflows, env: FAST_ENV });
});
afterAll(async () => server.close());

test("a value logged as base64 behind a prefix, through util.inspect, as JSON with \\u escapes, in three or more writes, and as hex is stored only as [REDACTED:name]", async () => {
  const tenant = await addTenant(server, uniqueName("tenant"));
  const value = AWKWARD_VALUE(crypto.randomUUID());
  expectOk(await server.post("/v1/credentials/create", { name: "api_token", value }, { key: tenant.key }), false);
  const id = await createJob(server, { workflow: "log-forms", params: {} }, tenant.key);
  const job = await waitForEnd(server, id, tenant.key);
  expect(job.status).toBe("completed");

  const messages = (await jobLogs(server, id, tenant.key)).map((line) => line.message as string);
  const stored = (await server.db.selectFrom("job_logs").select("message").where("job_id", "=", id).orderBy("id").execute()).map((row) => row.message);
  expect(stored).toEqual(messages);
  // Checked without printing the value: which form leaked, if any, in a line or across lines.
  for (const [how, text] of [
    ["one line at a time", messages],
    ["lines joined", [messages.join("")]],
    ["lines joined by line breaks", [messages.join("\n")]],
  ] as const) {
    expect({ how, leaked: text.map((m) => leakedForm(m, value)).filter(Boolean) }).toEqual({ how, leaked: [] });
  }
  // Each form was written, and was replaced where it stood.
  for (const label of ["a: Authorization: Basic ", "a: cookie=", "b: obj", "b: {", "b: request", "c: {", "d: ", "hex: "]) {
    const lines = messages.filter((m) => m.startsWith(label));
    expect({ label, redacted: lines.length > 0 && lines.every((m) => m.includes("[REDACTED:api_token]")) }).toEqual({ label, redacted: true });
  }
  // One character per write: each of those lines is the placeholder.
  const spelled = messages.indexOf("one character per line (d):");
  expect(spelled).toBeGreaterThan(0);
  const characters = messages.slice(spelled + 1, spelled + 1 + [...value].length);
  expect(characters.length).toBe([...value].length);
  expect(characters.every((m) => m === "[REDACTED:api_token]")).toBe(true);
});
