/** @jsxImportSource hono/jsx */
import { listTenantAuditEvents, type AuditEventWithKey } from "../../audit/store";
import { AppError } from "../../errors";
import { Badge, Page, Pager, When, type Flash } from "../layout";
import type { Mount, UiRequest } from "../server";

export const AUDIT_PAGE_SIZE = 100;

/** Jobs act without a key: the runner injects credentials and uses profiles for them. */
const BY_A_JOB = new Set(["credential.inject", "profile.use", "profile.refresh"]);

/** Who did it: the API key's name and prefix ("dev (us_abc…)"), a job (the runner), or "unknown key". */
export function who(event: Pick<AuditEventWithKey, "api_key_id" | "key_name" | "key_prefix" | "action">): string {
  if (!event.api_key_id && BY_A_JOB.has(event.action)) return "a job (the runner)";
  if (!event.api_key_id || !event.key_prefix) return "unknown key";
  return `${event.key_name ?? "unnamed key"} (${event.key_prefix}…)`;
}

function readBefore(value: string | undefined): number | undefined {
  if (value === undefined || value === "") return undefined;
  if (!/^[1-9][0-9]{0,15}$/.test(value)) throw new AppError("BAD_REQUEST", "before must be an audit event number (a positive whole number).");
  return Number(value);
}

/** Audit: the tenant's own events, newest first, 100 a page. Never a value. */
export function auditPages(mount: Mount): void {
  const render = async (req: UiRequest, flash?: Flash) => {
    const before = readBefore(req.c.req.query("before"));
    const rows = await listTenantAuditEvents(req.deps.db, req.session.tenantId, { before, limit: AUDIT_PAGE_SIZE + 1 });
    const events = rows.slice(0, AUDIT_PAGE_SIZE);
    const older = rows.length > AUDIT_PAGE_SIZE ? events[events.length - 1]!.id : undefined;
    return (
      <Page title="Audit" frame={req.frame("/ui/audit", flash)}>
        <p class="muted">Who read, changed or used a credential or browser profile, and sign-ins to this dashboard. Values are never recorded.</p>
        <h2 id="events">{before === undefined ? "Latest events" : "Older events"}</h2>
        {events.length === 0 ? (
          <p>{before === undefined ? "No audit events yet." : "No older events."}</p>
        ) : (
          <div class="table-wrap">
            <table class="responsive audit">
              <caption class="muted">
                {events.length === 1 ? "1 event" : `${events.length} events`}, newest first
              </caption>
              <thead>
                <tr>
                  <th scope="col">When</th>
                  <th scope="col">Who</th>
                  <th scope="col">Action</th>
                  <th scope="col">Outcome</th>
                  <th scope="col">What</th>
                  <th scope="col">Detail</th>
                </tr>
              </thead>
              <tbody>
                {events.map((e) => (
                  <tr data-audit-event={String(e.id)}>
                    <td data-label="When">
                      <When at={e.at} />
                    </td>
                    <td data-label="Who" data-who="">
                      {who(e)}
                    </td>
                    <td data-label="Action">
                      <code data-action="">{e.action}</code>
                    </td>
                    <td data-label="Outcome">
                      <Badge value={e.outcome} />
                    </td>
                    <td data-label="What" data-what="">
                      {e.credential_name ? <code>{e.credential_name}</code> : <span class="muted">—</span>}
                    </td>
                    <td data-label="Detail">{e.detail ?? <span class="muted">—</span>}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
        <Pager
          label="Audit pages"
          newest={before !== undefined ? { href: "/ui/audit", text: "Newest events" } : undefined}
          older={older !== undefined ? { href: `/ui/audit?before=${older}`, text: "Older events" } : undefined}
        />
      </Page>
    );
  };
  mount.page("/ui/audit", render);
}
