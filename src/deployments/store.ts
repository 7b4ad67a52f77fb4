import { sql, type Selectable } from "kysely";
import type { Db } from "../store/database";
import type { DeploymentsTable, DeploymentWorkflowsTable } from "../store/schema";

export type DeploymentRow = Selectable<DeploymentsTable>;
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
        ? { status: "ready", updated_at: end.at, ready_at: end.at, build_error: null }
        : { status: "failed", updated_at: end.at, build_error: end.error },
    )
    .where("id", "=", id)
    .where("status", "=", "building")
    .executeTakeFirst();
  if (Number(updated.numUpdatedRows) === 0) return false;
  if (end.status === "ready" && end.workflows.length > 0) await db.insertInto("deployment_workflows").values(end.workflows).execute();
  return true;
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
    .where(({ eb, selectFrom }) =>
      eb(
        "w.version",
        "=",
        selectFrom("deployment_workflows as n")
          .select(({ fn }) => fn.max("n.version").as("v"))
          .whereRef("n.tenant_id", "=", "w.tenant_id")
          .whereRef("n.name", "=", "w.name"),
      ),
    )
    .orderBy("w.name")
    .execute();
}
