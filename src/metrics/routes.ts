import type { Hono } from "hono";
import { sendText } from "../http/respond";
import type { Db } from "../store/database";
import { COMMIT, VERSION } from "../version";
import { Gauge, metrics, PROMETHEUS_CONTENT_TYPE } from "./registry";
import { countJobsByStatus } from "./store";

const JOB_STATUSES = ["queued", "starting_browser", "running", "completed", "failed", "cancelled"] as const;

/**
 * GET /metrics, unauthenticated like /healthz: Prometheus text format 0.0.4.
 * Nothing in it names a tenant, an id, a value or a key; job counts are
 * read from the database at scrape time, in one GROUP BY.
 */
export function mountMetrics(app: Hono, db: Db): void {
  app.get("/metrics", async (c) => {
    const jobs = await countJobsByStatus(db);
    const count = (status: string) => jobs.get(status) ?? 0;
    const scrape = [
      new Gauge("understudy_jobs", "Jobs in the database, by status.", () => {
        const known = JOB_STATUSES.map((status) => ({ labels: { status }, value: count(status) }));
        // A status written by a newer version still shows, under a fixed label.
        const other = [...jobs].filter(([status]) => !(JOB_STATUSES as readonly string[]).includes(status)).reduce((n, [, v]) => n + v, 0);
        return other > 0 ? [...known, { labels: { status: "other" }, value: other }] : known;
      }),
      new Gauge("understudy_jobs_queue_depth", "Jobs queued and not yet claimed by the runner.", () => [{ value: count("queued") }]),
      new Gauge("understudy_jobs_running", "Jobs claimed by the runner (starting their browser or running).", () => [
        { value: count("running") + count("starting_browser") },
      ]),
      new Gauge("understudy_build_info", "The version and commit of this build; always 1.", () => [{ labels: { version: VERSION, commit: COMMIT }, value: 1 }]),
      new Gauge("process_resident_memory_bytes", "Resident memory size in bytes.", () => [{ value: process.memoryUsage().rss }]),
    ];
    return sendText(c, await metrics.render(scrape), { contentType: PROMETHEUS_CONTENT_TYPE });
  });
}
