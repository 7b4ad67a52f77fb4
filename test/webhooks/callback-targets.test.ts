/**
 * A job's or a schedule's own callback_url gets the check webhooks/create
 * gives a url (issue 9, item 8): a URL written as a refused IP address is a
 * 400 at create (and at schedules/update), and nothing is stored. Loopback
 * and private addresses follow UNDERSTUDY_WEBHOOK_ALLOW_PRIVATE, as for
 * webhook endpoints; link-local (metadata) and unspecified addresses are
 * refused whatever it says.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { workflow } from "../../src/workflows/define";
import { addTenant, snapshotDb, startTestServer, uniqueName, type TestServer } from "../helpers";
import { envelop, expectError, expectOk } from "../http/wire";

const SECRET = "callback-secret-of-32-bytes-long";
const echo = workflow("target-echo", () => null);
/** Never fires by itself: 29 February at midnight, and the clock is real. */
const RARE_CRON = "0 0 29 2 *";

/** Each target, what it is, and whether a server that allows private targets accepts it. */
const TARGETS: { url: string; what: string; privateOnly: boolean }[] = [
  { url: "http://169.254.169.254/latest/meta-data/", what: "link-local", privateOnly: false },
  { url: "http://[::ffff:169.254.169.254]/latest/meta-data/", what: "link-local", privateOnly: false },
  { url: "http://2130706433/hook", what: "loopback", privateOnly: true },
  { url: "http://0x7f.1/hook", what: "loopback", privateOnly: true },
  { url: "http://[::]/hook", what: "unspecified", privateOnly: false },
  { url: "http://0.0.0.0/hook", what: "unspecified", privateOnly: false },
  { url: "http://10.0.0.1/hook", what: "private", privateOnly: true },
];

/** The routes that take a callback_url, each with a fresh valid input around one. */
function routes(server: TestServer, key: string): { path: string; input: (url: string) => Promise<Record<string, unknown>> }[] {
  const schedule = async () =>
    expectOk(await server.post("/v1/schedules/create", { workflow: echo.name, cron_expr: RARE_CRON }, { key }), false).schedule.id as string;
  return [
    { path: "/v1/jobs/create", input: async (url) => ({ workflow: echo.name, callback_url: url, callback_secret: SECRET }) },
    { path: "/v1/schedules/create", input: async (url) => ({ workflow: echo.name, cron_expr: RARE_CRON, callback_url: url, callback_secret: SECRET }) },
    { path: "/v1/schedules/update", input: async (url) => ({ id: await schedule(), callback_url: url, callback_secret: SECRET }) },
    // The check they share, for comparison.
    { path: "/v1/webhooks/create", input: async (url) => ({ url, signing_secret: SECRET }) },
  ];
}

const fieldOf = (path: string) => (path === "/v1/webhooks/create" ? "url" : "callback_url");

for (const allowPrivate of [false, true]) {
  describe(`a server that ${allowPrivate ? "allows" : "does not allow"} private targets`, () => {
    let server: TestServer;
    beforeAll(async () => {
      server = await startTestServer({
        workflows: [echo],
        runnerPaused: true,
        env: allowPrivate ? { UNDERSTUDY_WEBHOOK_ALLOW_PRIVATE: "1" } : {},
      });
    });
    afterAll(async () => server.close());

    for (const target of TARGETS) {
      const refused = !(allowPrivate && target.privateOnly);
      test(`${target.url} (${target.what}) is ${refused ? "a 400 naming the field, in both body forms, and nothing is stored" : "accepted"}`, async () => {
        const { key } = await addTenant(server, uniqueName("targets"));
        for (const route of routes(server, key)) {
          const field = fieldOf(route.path);
          if (!refused) {
            expectOk(await server.post(route.path, await route.input(target.url), { key }), false);
            continue;
          }
          for (const enveloped of [false, true]) {
            const input = await route.input(target.url);
            const before = await snapshotDb(server.db);
            const response = await server.post(route.path, enveloped ? envelop(input) : input, { key });
            const error = expectError(response, 400, "BAD_REQUEST", enveloped);
            expect(error.data.issues.map((i: { path: string[] }) => i.path)).toEqual([[field]]);
            expect(error.message).toContain(`${field} is refused`);
            expect(error.message).toContain(target.what);
            if (target.privateOnly) expect(error.message).toContain("UNDERSTUDY_WEBHOOK_ALLOW_PRIVATE=1");
            expect(response.text).not.toContain(SECRET);
            expect(await snapshotDb(server.db)).toEqual(before);
          }
        }
      });
    }

    test("a host name and a public address are accepted at create (a host name is checked at every attempt)", async () => {
      const { key } = await addTenant(server, uniqueName("targets"));
      for (const route of routes(server, key)) {
        for (const url of ["https://hooks.example.com/done", "http://93.184.216.34/hook", "http://localhost:9/hook"]) {
          expectOk(await server.post(route.path, await route.input(url), { key }), false);
        }
      }
    });

    test("schedules/update clearing the callback (both null) is not a target, and is accepted", async () => {
      const { key } = await addTenant(server, uniqueName("targets"));
      const created = expectOk(
        await server.post("/v1/schedules/create", { workflow: echo.name, cron_expr: RARE_CRON, callback_url: "https://hooks.example.com/x", callback_secret: SECRET }, { key }),
        false,
      );
      const updated = expectOk(await server.post("/v1/schedules/update", { id: created.schedule.id, callback_url: null, callback_secret: null }, { key }), false);
      expect(updated.schedule.callback_url).toBeNull();
    });
  });
}
