import type { Db } from "../store/database";

/** Jobs counted by status: one GROUP BY over the status index at scrape time. */
export async function countJobsByStatus(db: Db): Promise<Map<string, number>> {
  const rows = await db.selectFrom("jobs").select(["status", (eb) => eb.fn.countAll<number>().as("count")]).groupBy("status").execute();
  return new Map(rows.map((r) => [r.status, Number(r.count)]));
}
