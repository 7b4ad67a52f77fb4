/** @jsxImportSource hono/jsx */
import { streamSSE } from "hono/streaming";
import { findArtifact } from "../../artifacts/store";
import { AppError } from "../../errors";
import { ACTIVE, findJob, listJobLogs, TERMINAL, type JobStatus } from "../../jobs/store";
import { ActionForm, Badge, Page, Pager, When, type Flash } from "../layout";
import { currentSession, redirect, refusal, type Mount, type UiRequest } from "../server";

/**
 * Jobs: the tenant's jobs (filters, pages), one job's facts, params, result
 * or error, its log (live while it runs, by server-sent events), its
 * artifacts, and a cancel button while it can still be cancelled.
 */

const STATUSES = ["queued", "starting_browser", "running", "completed", "failed", "cancelled"] as const;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Log lines the job page renders itself; the rest (of a running job) arrive by the stream. */
const PAGE_LOG_LINES = 1000;
/** The stream polls the store this often. */
const POLL_MS = 200;
/** A comment at least this often keeps an idle stream open (Bun closes idle connections after 10 s). */
const HEARTBEAT_MS = 4000;
/** How often an open stream checks that its session still lives (signed out, expired, key revoked: the stream ends). */
const SESSION_RECHECK_MS = 3000;

interface JobSummary {
  job_id: string;
  workflow: string;
  status: string;
  created_at: string;
  completed_at: string | null;
}

interface JobDetail extends JobSummary {
  deployment_id: string | null;
  deployment_version: string | null;
  workflow_id: string;
  params: Record<string, unknown>;
  started_at: string | null;
  result?: unknown;
  error: string | null;
  mapped_stack: string | null;
  failure_class: string | null;
  timeout_seconds: number;
  nonce: string | null;
  schedule_id: string | null;
}

interface ArtifactSummary {
  artifact_id: string;
  kind: "screenshot" | "trace";
  content_type: string;
  size_bytes: number;
  created_at: string;
}

const isActive = (status: string) => (ACTIVE as readonly string[]).includes(status);
const isEnded = (status: string) => (TERMINAL as readonly string[]).includes(status);
const notFound = (id: string) => new AppError("NOT_FOUND", `Job ${id} not found.`);

/** A duration as a person reads it: "850 ms", "12.3 s", "4 min 5 s", "2 h 3 min". */
export function duration(from: string | null, to: string | null): string | undefined {
  if (!from || !to) return undefined;
  const ms = Date.parse(to) - Date.parse(from);
  if (!Number.isFinite(ms) || ms < 0) return undefined;
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

const pretty = (value: unknown) => JSON.stringify(value, null, 2) ?? "null";

function LogLine(props: { level: string; message: string; timestamp: string }) {
  return (
    <li class={`log-${props.level}`}>
      <time datetime={props.timestamp}>{props.timestamp.slice(11, 23)}</time> <span class="level">{props.level}</span>{" "}
      <span class="message">{props.message}</span>
    </li>
  );
}

export function jobPages(mount: Mount): void {
  // ---- The list -------------------------------------------------------------
  const renderList = async (req: UiRequest, flash?: Flash) => {
    const query = req.c.req.query();
    const status = query.status && query.status !== "any" ? query.status : undefined;
    const workflow = query.workflow?.trim() ? query.workflow.trim() : undefined;
    const cursor = query.cursor ? query.cursor : undefined;
    let jobs: JobSummary[] = [];
    let next: string | null = null;
    let problem: AppError | undefined;
    try {
      ({ jobs, next_cursor: next } = await req.call<{ jobs: JobSummary[]; next_cursor: string | null }>("/v1/jobs/list", { status, workflow, cursor, limit: 25 }));
    } catch (thrown) {
      if (!(thrown instanceof AppError) || thrown.status >= 500) throw thrown;
      problem = thrown;
    }
    const nextQuery = new URLSearchParams();
    if (status) nextQuery.set("status", status);
    if (workflow) nextQuery.set("workflow", workflow);
    if (next) nextQuery.set("cursor", next);
    const filtered = status !== undefined || workflow !== undefined;
    const page = (
      <Page title="Jobs" frame={req.frame("/ui/jobs", problem ? { kind: "error", message: `These filters could not be used: ${problem.message}` } : flash)}>
        <h2 id="filters">Filter</h2>
        <form method="get" action="/ui/jobs" class="filters" aria-label="Filter jobs">
          <label>
            Status
            <select name="status">
              <option value="any" selected={status === undefined}>
                any
              </option>
              {STATUSES.map((s) => (
                <option value={s} selected={s === status}>
                  {s.replace(/_/g, " ")}
                </option>
              ))}
            </select>
          </label>
          <label>
            Workflow
            <input type="text" name="workflow" value={workflow ?? ""} autocomplete="off" spellcheck={false} />
          </label>
          <div class="actions">
            <button type="submit">Apply filters</button>
            {filtered || cursor ? <a href="/ui/jobs">Clear</a> : null}
          </div>
        </form>
        <h2 id="list">{filtered ? "Matching jobs" : "All jobs"}</h2>
        {problem ? (
          <p>No jobs shown: fix the filters above.</p>
        ) : jobs.length === 0 ? (
          <p>{filtered ? "No jobs match these filters." : cursor ? "No more jobs." : "No jobs yet. Start one from a workflow's page (Workflows), or with the API or the CLI."}</p>
        ) : (
          <div class="table-wrap">
            <table class="responsive">
              <caption class="muted">{jobs.length === 1 ? "1 job, newest first" : `${jobs.length} jobs, newest first`}</caption>
              <thead>
                <tr>
                  <th scope="col">Workflow</th>
                  <th scope="col">Status</th>
                  <th scope="col">Created</th>
                  <th scope="col">Ended</th>
                  <th scope="col">Job</th>
                </tr>
              </thead>
              <tbody>
                {jobs.map((job) => (
                  <tr data-job={job.job_id}>
                    <td data-label="Workflow">
                      <code>{job.workflow}</code>
                    </td>
                    <td data-label="Status">
                      <Badge value={job.status} />
                    </td>
                    <td data-label="Created">
                      <When at={job.created_at} />
                    </td>
                    <td data-label="Ended">
                      <When at={job.completed_at} />
                    </td>
                    <td data-label="Job">
                      <a href={`/ui/jobs/${job.job_id}`} aria-label={`Job ${job.job_id} (${job.workflow})`}>
                        {/* The end of the id: ids are time-ordered (UUIDv7), so jobs of one minute share their beginning. */}
                        <code>…{job.job_id.slice(-12)}</code>
                      </a>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
        <Pager label="Job pages" older={next ? { href: `/ui/jobs?${nextQuery.toString()}`, text: "Next page" } : undefined} />
      </Page>
    );
    // A bad filter: the page itself (with its form) and the error's 4xx.
    if (problem) req.status = problem.status;
    return page;
  };
  mount.page("/ui/jobs", renderList);

  // ---- One job --------------------------------------------------------------
  const renderJob = async (req: UiRequest, flash?: Flash) => {
    const id = req.c.req.param("id") ?? "";
    if (!UUID.test(id)) throw notFound(id);
    const job = await req.call<JobDetail>("/v1/jobs/get", { id: id.toLowerCase() });
    const { artifacts } = await req.call<{ artifacts: ArtifactSummary[] }>("/v1/jobs/artifacts", { id: job.job_id });
    const lines = await listJobLogs(req.deps.db, req.session.tenantId, { jobId: job.job_id, limit: PAGE_LOG_LINES });
    const lastId = lines.length ? lines[lines.length - 1]!.id : 0;
    const live = isActive(job.status);
    const wait = duration(job.created_at, job.started_at);
    const run = duration(job.started_at, job.completed_at);
    let shot = 0;
    return (
      <Page title={`Job ${job.workflow}`} frame={req.frame("/ui/jobs", flash)}>
        <p>
          <a href="/ui/jobs">← All jobs</a>
        </p>
        <h2 id="facts">
          Job <code>{job.job_id}</code>
        </h2>
        <dl class="facts">
          <dt>Workflow</dt>
          <dd>
            <code data-job-workflow>{job.workflow}</code>
          </dd>
          <dt>Status</dt>
          <dd>
            <span class={`badge ${job.status}`} data-job-status>
              {job.status}
            </span>
          </dd>
          <dt>Created</dt>
          <dd>
            <When at={job.created_at} />
          </dd>
          <dt>Started</dt>
          <dd>
            <When at={job.started_at} />
            {wait ? <span class="muted"> (queued for {wait})</span> : null}
          </dd>
          <dt>Ended</dt>
          <dd>
            <When at={job.completed_at} />
            {run ? <span class="muted"> (ran for {run})</span> : null}
          </dd>
          <dt>Queue wait</dt>
          <dd data-job-wait>{wait ?? <span class="muted">—</span>}</dd>
          <dt>Run time</dt>
          <dd data-job-run>{run ?? <span class="muted">—</span>}</dd>
          <dt>Timeout</dt>
          <dd>{job.timeout_seconds} s</dd>
          <dt>Deployment version</dt>
          <dd>{job.deployment_version ? <code>{job.deployment_version}</code> : <span class="muted">none (a workflow built into the server)</span>}</dd>
          <dt>Schedule</dt>
          <dd>
            {job.schedule_id ? (
              <a href={`/ui/schedules#schedule-${job.schedule_id}`}>
                <code>{job.schedule_id}</code>
              </a>
            ) : (
              <span class="muted">none (started directly)</span>
            )}
          </dd>
          {job.nonce ? (
            <>
              <dt>Nonce</dt>
              <dd>
                <code>{job.nonce}</code>
              </dd>
            </>
          ) : null}
          <dt>Failure class</dt>
          <dd data-job-failure-class>{job.failure_class ?? <span class="muted">—</span>}</dd>
        </dl>
        {isActive(job.status) ? (
          <ActionForm action={`/ui/jobs/${job.job_id}/cancel`} csrf={req.session.csrfToken} class="inline" label="Cancel this job">
            <button type="submit" class="danger">
              Cancel job
            </button>
          </ActionForm>
        ) : null}

        <h2 id="params">Params</h2>
        <p class="hint">The input the job was created with. Credentials are never part of it and are never shown.</p>
        <pre data-job-params>{pretty(job.params)}</pre>

        {job.status === "completed" ? (
          <>
            <h2 id="result">Result</h2>
            <pre data-job-result>{pretty(job.result ?? null)}</pre>
          </>
        ) : null}
        {job.error || job.status === "failed" ? (
          <>
            <h2 id="error">Error</h2>
            <pre data-job-error>{job.error ?? "(no message)"}</pre>
            {job.mapped_stack ? (
              <>
                <h3>Stack</h3>
                <pre data-job-stack>{job.mapped_stack}</pre>
              </>
            ) : null}
          </>
        ) : null}

        <h2 id="log">Log</h2>
        <section
          class="log"
          aria-labelledby="log"
          aria-live="polite"
          data-log-stream={live ? `/ui/jobs/${job.job_id}/log?after=${lastId}` : undefined}
        >
          {lines.length === 0 ? <p data-log-empty>{live ? "No log lines yet." : "This job wrote no log lines."}</p> : null}
          <ol>
            {lines.map((line) => (
              <LogLine level={line.level} message={line.message} timestamp={line.timestamp} />
            ))}
          </ol>
        </section>
        {lines.length === PAGE_LOG_LINES ? (
          <p class="hint">
            The first {PAGE_LOG_LINES} lines are shown here; the API's /v1/logs/list has them all.
          </p>
        ) : null}

        <h2 id="artifacts">Artifacts</h2>
        {artifacts.length === 0 ? (
          <p>This job left no screenshots or traces.</p>
        ) : (
          <ul class="artifacts">
            {artifacts.map((a) => {
              const href = `/ui/jobs/${job.job_id}/artifacts/${a.artifact_id}`;
              if (a.kind === "screenshot") {
                shot += 1;
                return (
                  <li>
                    <figure>
                      <a href={href}>
                        <img src={href} alt={`Screenshot ${shot} of job`} loading="lazy" />
                      </a>
                      <figcaption>
                        Screenshot {shot}, <When at={a.created_at} /> ({bytes(a.size_bytes)})
                      </figcaption>
                    </figure>
                  </li>
                );
              }
              return (
                <li>
                  <a href={href} download={`trace-${job.job_id}.zip`}>
                    Download the Playwright trace
                  </a>{" "}
                  <span class="muted">
                    ({bytes(a.size_bytes)}; open with <code>npx playwright show-trace</code>)
                  </span>
                </li>
              );
            })}
          </ul>
        )}
      </Page>
    );
  };

  mount.page("/ui/jobs/:id", renderJob);
  mount.action("/ui/jobs/:id/cancel", renderJob, async (req) => {
    const id = req.c.req.param("id") ?? "";
    if (!UUID.test(id)) throw notFound(id);
    const out = await req.call<{ message: string }>("/v1/jobs/cancel", { id: id.toLowerCase() });
    return redirect(req.c, `/ui/jobs/${id.toLowerCase()}`, { kind: "ok", message: out.message });
  });

  // ---- An artifact's bytes ---------------------------------------------------
  mount.ui.get("/ui/jobs/:id/artifacts/:artifactId", async (c) => {
    const session = c.get("session");
    const id = c.req.param("id").toLowerCase();
    const artifactId = c.req.param("artifactId").toLowerCase();
    const missing = () => refusal(404, "No such artifact.", c.get("origin"));
    if (!UUID.test(id) || !UUID.test(artifactId)) return missing();
    const row = await findArtifact(mount.request(c).deps.db, session.tenantId, artifactId);
    if (!row || row.job_id !== id) return missing();
    const body = new Uint8Array(row.bytes);
    const headers: Record<string, string> = {
      "content-type": row.content_type,
      "content-length": String(body.length),
      "cache-control": "private, max-age=3600",
    };
    if (row.kind === "trace") headers["content-disposition"] = `attachment; filename="trace-${id}.zip"`;
    else headers["content-disposition"] = `inline; filename="screenshot-${artifactId}.png"`;
    return new Response(body, { headers });
  });

  // ---- The live log (server-sent events) ---------------------------------------
  mount.ui.get("/ui/jobs/:id/log", async (c) => {
    const { deps, session } = mount.request(c);
    const id = c.req.param("id").toLowerCase();
    if (!UUID.test(id)) return refusal(404, `Job ${id} not found.`, c.get("origin"));
    const first = await findJob(deps.db, session.tenantId, id);
    if (!first) return refusal(404, `Job ${id} not found.`, c.get("origin"));
    // A reconnecting EventSource says where it got to; that wins over the page's `after`.
    const given = c.req.header("last-event-id") ?? c.req.query("after") ?? "0";
    if (!/^\d{1,15}$/.test(given.trim())) return refusal(400, "after (or Last-Event-ID) must be a log line number.", c.get("origin"));
    let after = Number(given.trim());
    const deadline = Date.now() + (first.timeout_seconds + 60) * 1000;
    c.header("cache-control", "no-store");
    c.header("x-accel-buffering", "no");
    return streamSSE(c, async (stream) => {
      let gone = false;
      stream.onAbort(() => {
        gone = true;
      });
      // Belt and braces: the request's own signal also says the client went away.
      c.req.raw.signal.addEventListener("abort", () => {
        gone = true;
      });
      let lastWrite = Date.now();
      let sessionChecked = Date.now();
      let status = first.status as JobStatus;
      await stream.writeSSE({ event: "status", data: JSON.stringify({ status }) });
      while (!gone && !stream.aborted && Date.now() < deadline) {
        // The status first, then the lines: a job writes its lines before it ends, so
        // once it is seen ended, the lines read after that are all there will be.
        const job = await findJob(deps.db, session.tenantId, id);
        if (!job) break;
        if (job.status !== status) {
          status = job.status as JobStatus;
          await stream.writeSSE({ event: "status", data: JSON.stringify({ status }) });
          lastWrite = Date.now();
        }
        for (;;) {
          const rows = await listJobLogs(deps.db, session.tenantId, { jobId: id, afterId: after, limit: 500 });
          for (const row of rows) {
            await stream.writeSSE({ event: "line", id: String(row.id), data: JSON.stringify({ level: row.level, message: row.message, timestamp: row.timestamp }) });
            after = row.id;
          }
          if (rows.length) lastWrite = Date.now();
          if (rows.length < 500 || gone) break;
        }
        if (isEnded(status)) {
          await stream.writeSSE({ event: "end", data: JSON.stringify({ status }) });
          break;
        }
        // A stream outlives no sign-out and no revoked key: the session is looked at again now and then.
        if (Date.now() - sessionChecked >= SESSION_RECHECK_MS) {
          if (!(await currentSession(deps, c))) break;
          sessionChecked = Date.now();
        }
        if (Date.now() - lastWrite >= HEARTBEAT_MS) {
          await stream.write(": keep-alive\n\n");
          lastWrite = Date.now();
        }
        await stream.sleep(POLL_MS);
      }
    });
  });
}
