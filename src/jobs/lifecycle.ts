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
  const row = await store.endJob(trx, id, from, end);
  if (!row) return false;
  await store.releaseJobReferences(trx, id);
  await releaseProfileReferences(trx, id);
  for (const hook of hooks) await hook(trx, row);
  return true;
}
