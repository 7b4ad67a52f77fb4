import { sql, type Selectable, type SqlBool } from "kysely";
import type { Db } from "../store/database";
import { ACTIVE } from "../jobs/store";
import type { DeploymentArchivesTable, DeploymentsTable, DeploymentWorkflowsTable } from "../store/schema";

/** A deployment_workflows row aliased `w` is its tenant's newest version of its name. */
const isNewestVersion = sql<SqlBool>`w.version = (SELECT max(n.version) FROM deployment_workflows AS n WHERE n.tenant_id = w.tenant_id AND n.name = w.name)`;

export type DeploymentRow = Selectable<DeploymentsTable>;
export type DeploymentArchiveRow = Selectable<DeploymentArchivesTable>;
export type DeploymentWorkflowRow = Selectable<DeploymentWorkflowsTable>;
export type DeploymentStatus = "building" | "ready" | "failed";

/** The next version number of a tenant's deployments (1 for the first); call inside the inserting transaction. */
export async function nextDeploymentVersion(db: Db, tenantId: string): Promise<number> {
  const row = await db
    .selectFrom("deployments")
    .select(sql<number>`coalesce(max(version), 0)`.as("latest"))
    .where("tenant_id", "=", tenantId)
    .executeTakeFirst();
  return (row?.latest ?? 0) + 1;
}

export async function insertDeployment(db: Db, row: DeploymentRow): Promise<void> {
  await db.insertInto("deployments").values(row).execute();
}

export async function findDeployment(db: Db, tenantId: string, id: string): Promise<DeploymentRow | undefined> {
  return db.selectFrom("deployments").selectAll().where("tenant_id", "=", tenantId).where("id", "=", id).executeTakeFirst();
}

export async function findDeploymentById(db: Db, id: string): Promise<DeploymentRow | undefined> {
  return db.selectFrom("deployments").selectAll().where("id", "=", id).executeTakeFirst();
}

/** A tenant's deployments, newest first, `limit` of them after the version `before` (exclusive). */
export async function listDeployments(db: Db, tenantId: string, limit: number, before?: number): Promise<DeploymentRow[]> {
  let query = db.selectFrom("deployments").selectAll().where("tenant_id", "=", tenantId);
  if (before !== undefined) query = query.where("version", "<", before);
  return query.orderBy("version", "desc").limit(limit).execute();
}

export async function deploymentsWithStatus(db: Db, status: DeploymentStatus, tenantId?: string): Promise<DeploymentRow[]> {
  let query = db.selectFrom("deployments").selectAll().where("status", "=", status);
  if (tenantId !== undefined) query = query.where("tenant_id", "=", tenantId);
  return query.orderBy("created_at").execute();
}

/** Ends a build that is still `building`: ready with its workflows, or failed with its error. False when it was no longer building. */
export async function finishBuild(
  db: Db,
  id: string,
  end: { status: "ready"; at: string; workflows: DeploymentWorkflowRow[] } | { status: "failed"; at: string; error: string },
): Promise<boolean> {
  const updated = await db
    .updateTable("deployments")
    .set(
      end.status === "ready"
        ? { status: "ready", updated_at: end.at, ready_at: end.at, build_error: null, build_lease_until: null }
        : { status: "failed", updated_at: end.at, build_error: end.error, build_lease_until: null },
    )
    .where("id", "=", id)
    .where("status", "=", "building")
    .executeTakeFirst();
  if (Number(updated.numUpdatedRows) === 0) return false;
  if (end.status === "ready" && end.workflows.length > 0) await db.insertInto("deployment_workflows").values(end.workflows).execute();
  return true;
}

/**
 * Takes the build of a deployment still `building` until `until`: when no one
 * holds it, or its holder's lease lapsed before `now` (or always, `force`:
 * one instance alone, whatever was building belonged to a process now gone).
 * False when it is held by someone else or no longer building.
 */
export async function claimBuild(db: Db, id: string, now: string, until: string, force = false): Promise<boolean> {
  let query = db.updateTable("deployments").set({ build_lease_until: until }).where("id", "=", id).where("status", "=", "building");
  if (!force) query = query.where((eb) => eb.or([eb("build_lease_until", "is", null), eb("build_lease_until", "<", now)]));
  const updated = await query.executeTakeFirst();
  return Number(updated.numUpdatedRows) === 1;
}

/** Extends the lease of a build this instance holds (it is still building). */
export async function renewBuildLease(db: Db, id: string, until: string): Promise<void> {
  await db.updateTable("deployments").set({ build_lease_until: until }).where("id", "=", id).where("status", "=", "building").execute();
}

/** Deployments left `building` with no live holder: none, or a lease lapsed before `now` (undefined: every one). */
export async function orphanedBuilds(db: Db, now: string | undefined): Promise<DeploymentRow[]> {
  let query = db.selectFrom("deployments").selectAll().where("status", "=", "building");
  if (now !== undefined) query = query.where((eb) => eb.or([eb("build_lease_until", "is", null), eb("build_lease_until", "<", now)]));
  return query.orderBy("created_at").execute();
}

export async function insertArchive(db: Db, row: DeploymentArchiveRow): Promise<void> {
  await db.insertInto("deployment_archives").values(row).execute();
}

export async function findArchive(db: Db, tenantId: string, deploymentId: string): Promise<DeploymentArchiveRow | undefined> {
  return db.selectFrom("deployment_archives").selectAll().where("tenant_id", "=", tenantId).where("deployment_id", "=", deploymentId).executeTakeFirst();
}

/**
 * Deletes the stored uploads no job can run any more: of failed deployments,
 * and of ready ones that are no tenant workflow's current version and that
 * no queued or running job was created with. A replacement must have been
 * ready since before `cutoff`, so that a job being created right as it got
 * ready (its transaction read the old version) has committed and is seen.
 * Returns the deployments whose upload was deleted.
 */
export async function pruneArchives(db: Db, cutoff: string): Promise<string[]> {
  const prunable = await db
    .selectFrom("deployment_archives as a")
    .innerJoin("deployments as d", "d.id", "a.deployment_id")
    .select("d.id")
    .where((eb) =>
      eb.or([
        eb("d.status", "=", "failed"),
        eb.and([
          eb("d.status", "=", "ready"),
          eb.not(
            eb.exists(
              eb
                .selectFrom("deployment_workflows as w")
                .select("w.name")
                .whereRef("w.deployment_id", "=", "d.id")
                .where(isNewestVersion),
            ),
          ),
          eb.not(eb.exists(eb.selectFrom("jobs as j").select("j.id").whereRef("j.deployment_id", "=", "d.id").where("j.status", "in", ACTIVE))),
          eb.not(
            eb.exists(
              eb
                .selectFrom("deployments as newer")
                .select("newer.id")
                .whereRef("newer.tenant_id", "=", "d.tenant_id")
                .whereRef("newer.version", ">", "d.version")
                .where("newer.status", "=", "ready")
                .where("newer.ready_at", ">=", cutoff),
            ),
          ),
        ]),
      ]),
    )
    .execute();
  const ids = prunable.map((r) => r.id);
  if (ids.length > 0) await db.deleteFrom("deployment_archives").where("deployment_id", "in", ids).execute();
  return ids;
}

export async function workflowsOfDeployment(db: Db, deploymentId: string): Promise<DeploymentWorkflowRow[]> {
  return db.selectFrom("deployment_workflows").selectAll().where("deployment_id", "=", deploymentId).orderBy("name").execute();
}

export async function workflowsOfDeployments(db: Db, deploymentIds: readonly string[]): Promise<DeploymentWorkflowRow[]> {
  if (deploymentIds.length === 0) return [];
  return db.selectFrom("deployment_workflows").selectAll().where("deployment_id", "in", deploymentIds).orderBy("name").execute();
}

export async function findDeploymentWorkflow(db: Db, deploymentId: string, name: string): Promise<DeploymentWorkflowRow | undefined> {
  return db.selectFrom("deployment_workflows").selectAll().where("deployment_id", "=", deploymentId).where("name", "=", name).executeTakeFirst();
}

/** The tenant's current workflow of this name: the one of its newest ready deployment that has it. */
export async function currentDeployedWorkflow(db: Db, tenantId: string, name: string): Promise<DeploymentWorkflowRow | undefined> {
  return db
    .selectFrom("deployment_workflows")
    .selectAll()
    .where("tenant_id", "=", tenantId)
    .where("name", "=", name)
    .orderBy("version", "desc")
    .limit(1)
    .executeTakeFirst();
}

/** The tenant's current deployed workflows, one per name (the newest version of each). */
export async function currentDeployedWorkflows(db: Db, tenantId: string): Promise<DeploymentWorkflowRow[]> {
  return db
    .selectFrom("deployment_workflows as w")
    .selectAll("w")
    .where("w.tenant_id", "=", tenantId)
    .where(isNewestVersion)
    .orderBy("w.name")
    .execute();
}
