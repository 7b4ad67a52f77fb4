import type { Selectable } from "kysely";
import type { BrowserProfilesTable } from "../store/schema";
import type { Db } from "../store/database";
import { listInput, listSlots, PreparedQueries, PreparedQuery } from "../store/prepared";

export interface ProfileRow {
  id: string;
  tenantId: string;
  name: string;
  /** The sealed storageState JSON; null until a state is uploaded or saved by a job. */
  sealedState: Uint8Array | null;
  version: number;
  createdAt: string;
  updatedAt: string;
}

const toRow = (r: Selectable<BrowserProfilesTable>): ProfileRow => ({
  id: r.id,
  tenantId: r.tenant_id,
  name: r.name,
  sealedState: r.sealed_state,
  version: r.version,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

export async function findProfileByName(db: Db, tenantId: string, name: string): Promise<ProfileRow | undefined> {
  const row = await db.selectFrom("browser_profiles").selectAll().where("tenant_id", "=", tenantId).where("name", "=", name).executeTakeFirst();
  return row && toRow(row);
}

export async function findProfileById(db: Db, tenantId: string, id: string): Promise<ProfileRow | undefined> {
  const row = await db.selectFrom("browser_profiles").selectAll().where("tenant_id", "=", tenantId).where("id", "=", id).executeTakeFirst();
  return row && toRow(row);
}

/** The tenant's profiles by name, without their state. */
export async function listProfiles(db: Db, tenantId: string): Promise<Omit<ProfileRow, "sealedState">[]> {
  const rows = await db
    .selectFrom("browser_profiles")
    .select(["id", "tenant_id", "name", "version", "created_at", "updated_at"])
    .where("tenant_id", "=", tenantId)
    .orderBy("name")
    .execute();
  return rows.map((r) => ({ id: r.id, tenantId: r.tenant_id, name: r.name, version: r.version, createdAt: r.created_at, updatedAt: r.updated_at }));
}

export async function insertProfile(db: Db, row: ProfileRow): Promise<void> {
  await db
    .insertInto("browser_profiles")
    .values({
      id: row.id,
      tenant_id: row.tenantId,
      name: row.name,
      sealed_state: row.sealedState,
      version: row.version,
      created_at: row.createdAt,
      updated_at: row.updatedAt,
    })
    .execute();
}

export async function updateProfileState(db: Db, tenantId: string, id: string, change: { sealedState: Uint8Array; version: number; updatedAt: string }): Promise<void> {
  await db
    .updateTable("browser_profiles")
    .set({ sealed_state: change.sealedState, version: change.version, updated_at: change.updatedAt })
    .where("tenant_id", "=", tenantId)
    .where("id", "=", id)
    .execute();
}

export async function deleteProfile(db: Db, tenantId: string, id: string): Promise<void> {
  await db.deleteFrom("browser_profiles").where("tenant_id", "=", tenantId).where("id", "=", id).execute();
}

/** The jobs (queued or running, by the reference invariant) that use this profile. */
export async function listReferencingJobIds(db: Db, tenantId: string, profileId: string): Promise<string[]> {
  const rows = await db.selectFrom("job_profiles").select("job_id").where("tenant_id", "=", tenantId).where("profile_id", "=", profileId).orderBy("job_id").execute();
  return rows.map((r) => r.job_id);
}

export async function insertJobReference(db: Db, tenantId: string, jobId: string, profileId: string, at: string): Promise<void> {
  await db.insertInto("job_profiles").values({ job_id: jobId, profile_id: profileId, tenant_id: tenantId, created_at: at }).onConflict((oc) => oc.doNothing()).execute();
}

const releaseQueries = new PreparedQueries<Record<string, string>, unknown>(
  (size) => new PreparedQuery((db, slot) => db.deleteFrom("job_profiles").where("job_id", "in", listSlots(slot, "job", Number(size)))),
);

/** Removes ended jobs' references (in the transaction that ends them: every job end runs it), compiled once per batch size. */
export async function releaseJobReferences(db: Db, jobIds: readonly string[]): Promise<void> {
  if (jobIds.length === 0) return;
  await releaseQueries.for(jobIds.length).execute(db, listInput("job", jobIds));
}
