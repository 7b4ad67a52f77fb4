/** @jsxImportSource hono/jsx */
import { nextFireAfter } from "../../schedules/cron";
import { ActionForm, Badge, Page, When, type Flash } from "../layout";
import { redirect, type Mount, type UiRequest } from "../server";

interface ScheduleSummary {
  id: string;
  workflow: string;
  cron_expr: string;
  timezone: string;
  enabled: boolean;
  overlap_policy: string;
  next_fire_at?: string;
  last_fire_at: string | null;
  last_job_id: string | null;
  last_error: string | null;
  consecutive_failures: number;
}

interface LastJob {
  id: string;
  schedule_id: string | null;
  status: string;
  created_at: string;
}

const FIRES_SHOWN = 3;
/** The most /v1/schedules/list gives in one call. */
const SCHEDULES_SHOWN = 200;

/** cronstrue, loaded by the first schedules page rather than at every start (about 15 ms, measured). */
let cronstrue: Promise<typeof import("cronstrue").default> | undefined;

/** The cron expression in words ("At 09:00"), or undefined when cronstrue cannot read it. */
export async function cronInWords(expr: string): Promise<string | undefined> {
  const words = await (cronstrue ??= import("cronstrue").then((m) => m.default));
  try {
    return words.toString(expr, { use24HourTimeFormat: true, throwExceptionOnParseError: true });
  } catch {
    return undefined;
  }
}

/** The next `count` fire times after `after`, by the scheduler's own rules (src/schedules/cron.ts). */
export function nextFires(expr: string, timeZone: string, after: Date, count = FIRES_SHOWN): Date[] {
  const fires: Date[] = [];
  let from = after;
  try {
    for (let i = 0; i < count; i++) {
      const next = nextFireAfter(expr, timeZone, from);
      if (!next) break;
      fires.push(next);
      from = next;
    }
  } catch {
    // an expression the scheduler cannot use shows no fire times
  }
  return fires;
}

/** An instant as wall time in a zone, with the zone's name: "5 Jan 2026, 09:00 Europe/Paris". */
export function inZone(at: Date, timeZone: string): string {
  try {
    return `${new Intl.DateTimeFormat("en-GB", { timeZone, dateStyle: "medium", timeStyle: "short" }).format(at)} ${timeZone}`;
  } catch {
    return at.toISOString();
  }
}

/**
 * The newest job each schedule started. That is the schedule's last_job_id
 * (set with each fire and trigger, in the transaction that queues the job, so
 * it is the newest job whose jobs.schedule_id is the schedule): looked up by
 * primary key rather than by scanning the tenant's jobs for their schedule_id.
 */
async function lastJobs(req: UiRequest, schedules: readonly ScheduleSummary[]): Promise<Map<string, LastJob>> {
  const found = new Map<string, LastJob>();
  const jobIds = schedules.flatMap((s) => (s.last_job_id ? [s.last_job_id] : []));
  if (jobIds.length === 0) return found;
  const rows = await req.deps.db
    .selectFrom("jobs")
    .select(["id", "schedule_id", "status", "created_at"])
    .where("tenant_id", "=", req.session.tenantId)
    .where("id", "in", jobIds)
    .execute();
  for (const row of rows) if (row.schedule_id) found.set(row.schedule_id, row);
  return found;
}

/** Schedules: each one's cron in words, its next fires in its own zone, its last outcome. Enable, disable, trigger now. */
export function schedulePages(mount: Mount): void {
  const render = async (req: UiRequest, flash?: Flash) => {
    const { schedules } = await req.call<{ schedules: ScheduleSummary[] }>("/v1/schedules/list", { limit: SCHEDULES_SHOWN });
    const last = await lastJobs(req, schedules);
    const now = req.deps.clock.now();
    const csrf = req.session.csrfToken;
    const inWords = new Map(await Promise.all(schedules.map(async (s) => [s.id, await cronInWords(s.cron_expr)] as const)));
    return (
      <Page title="Schedules" frame={req.frame("/ui/schedules", flash)}>
        <p class="muted">Schedules are created through the API or the CLI. Fire times are shown in each schedule's own time zone.</p>
        <h2 id="schedules">Your schedules</h2>
        {schedules.length === 0 ? (
          <p>No schedules yet.</p>
        ) : (
          <div class="table-wrap">
            <table class="responsive schedules">
              <caption class="muted">
                {schedules.length === 1 ? "1 schedule" : `${schedules.length} schedules`}
                {schedules.length === SCHEDULES_SHOWN ? ` (the newest ${SCHEDULES_SHOWN}; the API lists them all by workflow)` : ""}
              </caption>
              <thead>
                <tr>
                  <th scope="col">Workflow</th>
                  <th scope="col">When</th>
                  <th scope="col">Time zone</th>
                  <th scope="col">Next fires</th>
                  <th scope="col">State</th>
                  <th scope="col">Last outcome</th>
                  <th scope="col">Actions</th>
                </tr>
              </thead>
              <tbody>
                {schedules.map((s) => {
                  const words = inWords.get(s.id);
                  const fires = s.enabled ? nextFires(s.cron_expr, s.timezone, now) : [];
                  const job = last.get(s.id);
                  const label = `${s.workflow} (${s.cron_expr})`;
                  return (
                    <tr id={`schedule-${s.id}`} data-schedule={s.id}>
                      <td data-label="Workflow">
                        <strong>{s.workflow}</strong>
                        <br />
                        <code class="muted" data-schedule-id="">
                          {s.id}
                        </code>
                      </td>
                      <td data-label="When">
                        <span data-cron-words="">{words ?? s.cron_expr}</span>
                        <br />
                        <code data-cron="">{s.cron_expr}</code>
                      </td>
                      <td data-label="Time zone">{s.timezone}</td>
                      <td data-label="Next fires">
                        {!s.enabled ? (
                          <span class="muted">none while disabled</span>
                        ) : fires.length === 0 ? (
                          <span class="muted">none</span>
                        ) : (
                          <ol class="fires" data-next-fires="">
                            {fires.map((at) => (
                              <li>
                                <time datetime={at.toISOString()}>{inZone(at, s.timezone)}</time>
                              </li>
                            ))}
                          </ol>
                        )}
                      </td>
                      <td data-label="State">
                        <span data-enabled={s.enabled ? "true" : "false"}>
                          <Badge value={s.enabled ? "enabled" : "disabled"} />
                        </span>
                        {s.last_error ? (
                          <p class="muted" data-last-error="">
                            Last error{s.consecutive_failures > 1 ? ` (${s.consecutive_failures} in a row)` : ""}: {s.last_error}
                          </p>
                        ) : null}
                      </td>
                      <td data-label="Last outcome" data-last-outcome="">
                        {job ? (
                          <>
                            <a href={`/ui/jobs/${job.id}`}>
                              <Badge value={job.status} />
                            </a>{" "}
                            <When at={job.created_at} />
                          </>
                        ) : (
                          <span class="muted">never fired</span>
                        )}
                      </td>
                      <td data-label="Actions">
                        <ActionForm
                          action={`/ui/schedules/${s.id}/${s.enabled ? "disable" : "enable"}`}
                          csrf={csrf}
                          class="inline"
                          label={`${s.enabled ? "Disable" : "Enable"} ${label}`}
                        >
                          <button type="submit" class="secondary" aria-label={`${s.enabled ? "Disable" : "Enable"} ${s.workflow} schedule ${s.cron_expr} ${s.timezone}`}>
                            {s.enabled ? "Disable" : "Enable"} {s.workflow}
                          </button>
                        </ActionForm>{" "}
                        <ActionForm action={`/ui/schedules/${s.id}/trigger`} csrf={csrf} class="inline" label={`Trigger ${label} now`}>
                          <button type="submit" aria-label={`Trigger ${s.workflow} now (schedule ${s.cron_expr} ${s.timezone})`}>
                            Trigger {s.workflow} now
                          </button>
                        </ActionForm>
                      </td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </div>
        )}
      </Page>
    );
  };

  mount.page("/ui/schedules", render);
  const setEnabled = (enabled: boolean) => async (req: UiRequest) => {
    const id = req.c.req.param("id") ?? "";
    const out = await req.call<{ schedule: ScheduleSummary }>("/v1/schedules/update", { id, enabled });
    const s = out.schedule;
    return redirect(req.c, "/ui/schedules", { kind: "ok", message: `Schedule ${s.workflow} (${s.cron_expr}) ${enabled ? "enabled" : "disabled"}.` });
  };
  mount.action("/ui/schedules/:id/enable", render, setEnabled(true));
  mount.action("/ui/schedules/:id/disable", render, setEnabled(false));
  mount.action("/ui/schedules/:id/trigger", render, async (req) => {
    const id = req.c.req.param("id") ?? "";
    const out = await req.call<{ job_id?: string; schedule: ScheduleSummary }>("/v1/schedules/trigger", { id });
    const message = `Schedule ${out.schedule.workflow} triggered${out.job_id ? `: job ${out.job_id} queued` : ""}.`;
    if (out.job_id) return redirect(req.c, `/ui/jobs/${out.job_id}`, { kind: "ok", message });
    return redirect(req.c, "/ui/schedules", { kind: "ok", message });
  });
}
