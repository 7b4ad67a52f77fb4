/**
 * The Audit page over real HTTP: a credential read by the API shows with the
 * key's name and prefix; strictly the session tenant's rows; newest first,
 * 100 a page with a before-id cursor; "unknown key" for no key.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomId } from "../../src/clock";
import { recordAuditEvent } from "../../src/audit/store";
import { createApiKey } from "../../src/tenants/service";
import { addTenant, startTestServer, uniqueName, type TestServer } from "../helpers";
import { expectOk } from "../http/wire";
import { signIn } from "./support";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(async () => server.close());

const rows = (page: string) => page.match(/<tr data-audit-event="\d+"/g) ?? [];

/** Waits (bounded) for an audit event: reads and sign-ins are written just after their response. */
async function waitForAudit(tenantId: string, action: string, credentialName: string | null): Promise<void> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const found = await server.db
      .selectFrom("audit_events")
      .select("id")
      .where("tenant_id", "=", tenantId)
      .where("action", "=", action)
      .where("credential_name", credentialName === null ? "is" : "=", credentialName)
      .executeTakeFirst();
    if (found) return;
    if (Date.now() > deadline) throw new Error(`no ${action} audit event for ${credentialName}`);
    await Bun.sleep(5);
  }
}

describe("the audit page", () => {
  test("shows a credential read by the API with the key's name and prefix; beta never sees alpha's rows", async () => {
    const { key, info } = await createApiKey(server.db, server.deps.clock, randomId, server.tenants.alpha, "dev");
    const name = uniqueName("audited");
    expectOk(await server.post("/v1/credentials/create", { name, value: "s3cret-value-never-shown" }, { key }), false);
    expectOk(await server.post("/v1/credentials/get", { name }, { key }), false);
    await waitForAudit(server.tenants.alpha, "credential.read", name);

    const alpha = await signIn(server, server.keys.alpha);
    const page = await alpha.get("/ui/audit");
    expect(page.status).toBe(200);
    expect(page.text).not.toContain("s3cret-value-never-shown");
    expect(page.text).toContain('<th scope="col">Who</th>');
    expect(page.text).toContain('<h2 id="events">');
    const start = page.text.indexOf(`<code>${name}</code>`);
    expect(start).toBeGreaterThan(-1);
    const rowStart = page.text.lastIndexOf("<tr ", start);
    const row = page.text.slice(rowStart, page.text.indexOf("</tr>", start));
    expect(row).toContain('<code data-action="">credential.read</code>');
    expect(row).toContain(`dev (${info.prefix}…)`);
    expect(row).toContain('class="badge success"');
    // Newest first: the read comes before the create.
    expect(page.text.indexOf("credential.read")).toBeLessThan(page.text.indexOf("credential.create"));

    const beta = await signIn(server, server.keys.beta);
    await waitForAudit(server.tenants.beta, "dashboard.sign_in", null);
    const other = await beta.get("/ui/audit");
    expect(other.status).toBe(200);
    expect(other.text).not.toContain(name);
    expect(other.text).not.toContain(info.prefix);
    expect(other.text).not.toContain("credential.read");
    // Beta's own sign-in is there, so the page does list beta's rows.
    expect(other.text).toContain("dashboard.sign_in");
  });

  test("100 a page, newest first, with a link to older events; no key or another tenant's key shows as unknown", async () => {
    const t = await addTenant(server, uniqueName("audit-pages"));
    const other = await addTenant(server, uniqueName("audit-other"));
    const at = "2026-01-02T03:04:05.000Z";
    for (let i = 1; i <= 150; i++) {
      await recordAuditEvent(server.db, {
        at,
        tenantId: t.tenantId,
        // The first event names no key; the second names another tenant's key (never shown by name).
        apiKeyId: i === 1 ? null : i === 2 ? other.apiKeyId : t.apiKeyId,
        action: "credential.read",
        outcome: i % 2 === 0 ? "success" : "not_found",
        credentialName: `cred-${String(i).padStart(3, "0")}`,
      });
    }
    const client = await signIn(server, t.key);
    await waitForAudit(t.tenantId, "dashboard.sign_in", null);
    const first = await client.get("/ui/audit");
    expect(first.status).toBe(200);
    // The sign-in is the newest event, then cred-150 down.
    expect(rows(first.text).length).toBe(100);
    expect(first.text.indexOf("dashboard.sign_in")).toBeLessThan(first.text.indexOf("cred-150"));
    expect(first.text.indexOf("cred-150")).toBeLessThan(first.text.indexOf("cred-149"));
    expect(first.text).not.toContain("cred-051");
    const older = /href="(\/ui\/audit\?before=\d+)" rel="next">\s*Older events/.exec(first.text)?.[1];
    expect(older).toBeDefined();

    const second = await client.get(older!);
    expect(second.status).toBe(200);
    expect(rows(second.text).length).toBe(51);
    expect(second.text).toContain("cred-051");
    expect(second.text).toContain("cred-001");
    expect(second.text).not.toContain("cred-052");
    expect(second.text).not.toContain('rel="next"');
    expect(second.text).toContain('href="/ui/audit">Newest events');
    const unknown = (n: string) => {
      const start = second.text.indexOf(`<code>${n}</code>`);
      return second.text.slice(second.text.lastIndexOf("<tr ", start), start);
    };
    expect(unknown("cred-001")).toContain('data-who="">unknown key<');
    expect(unknown("cred-002")).toContain('data-who="">unknown key<');

    const bad = await client.get("/ui/audit?before=drop-table");
    expect(bad.status).toBe(400);
  });

  test("the page has no inline script, style or event handler", async () => {
    const { text } = await (await signIn(server, server.keys.alpha)).get("/ui/audit");
    expect(text).not.toMatch(/<script(?![^>]*\bsrc=)/);
    expect(text).not.toMatch(/\sstyle=|\son[a-z]+=/);
  });
});
