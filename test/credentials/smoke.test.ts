import { afterAll, beforeAll, expect, test } from "bun:test";
import { startTestServer, type TestServer } from "../helpers";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(async () => server.close());

test("create then get round trip", async () => {
  const created = await server.post("/v1/credentials/create", { json: { name: "password", value: "s3cret" } });
  expect(created.status).toBe(200);
  expect(created.body.json.success).toBe(true);
  const got = await server.post("/v1/credentials/get", { name: "PASSWORD " });
  expect(got.body).toEqual({ id: created.body.json.credential_id, value: "s3cret" });
});
