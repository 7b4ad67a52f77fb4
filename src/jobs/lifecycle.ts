import type { Db } from "../store/database";
import { releaseProfileReferences } from "../profiles/service";
import * as store from "./store";

/**
 * Runs inside the transaction that ends a job, after the job row has its
 * final status: what a job's end causes (webhook deliveries, a schedule's
 * failure count) is written in that same transaction, so it happens exactly
 * when the job ends, crash or not.
 */
export type JobEndHook = (trx: Db, job: store.JobRow) => Promise<void>;

/**
 * Ends a job that is in one of `from`, releases its credential references,
 * and runs the end hooks, all in the caller's transaction. Returns false (and
 * does nothing) when the job had already ended.
 */
export async function finishJob(
  trx: Db,
  hooks: readonly JobEndHook[],
  id: string,
  from: readonly store.JobStatus[],
  end: store.JobEnd,
): Promise<boolean> {
  const [ended] = await finishJobs(trx, hooks, [{ id, end }], from);
  return ended === true;
}

/**
 * finishJob for many jobs in one transaction (the runner's ends, group
 * committed): one update of all their rows, then one release of all their
 * references.
 * Returns, per job, whether it was ended here.
 */
export async function finishJobs(
  trx: Db,
  hooks: readonly JobEndHook[],
  ends: readonly { id: string; end: store.JobEnd }[],
  from: readonly store.JobStatus[],
): Promise<boolean[]> {
  // Hooks run in the order the ends came (RETURNING gives no order).
  const order = new Map(ends.map(({ id }, i) => [id, i]));
  const rows = (await store.endJobs(trx, ends, from)).sort((a, b) => order.get(a.id)! - order.get(b.id)!);
  const ids = rows.map((row) => row.id);
  const endedIds = new Set(ids);
  const ended = ends.map(({ id }) => endedIds.has(id));
  await store.releaseJobReferences(trx, ids);
  await releaseProfileReferences(trx, ids);
  for (const row of rows) for (const hook of hooks) await hook(trx, row);
  return ended;
}
