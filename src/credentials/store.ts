import type { Db } from "../store/database";
import { Batcher } from "../store/batcher";
import { isPostgres } from "../store/postgres";
import { PreparedQueries, PreparedQuery } from "../store/prepared";

export interface CredentialRow {
  id: string;
  tenantId: string;
  name: string;
  sealedValue: Uint8Array;
  version: number;
  /** What the sealed value is bound to (see sealContext in service.ts). */
  sealFormat: number;
  createdAt: string;
  updatedAt: string;
}

export interface CredentialSummary {
  id: string;
  name: string;
  createdAt: string;
  updatedAt: string;
}

const toRow = (r: {
  id: string;
  tenant_id: string;
  name: string;
  sealed_value: Uint8Array;
  version: number;
  seal_format: number;
  created_at: string;
  updated_at: string;
}): CredentialRow => ({
  id: r.id,
  tenantId: r.tenant_id,
  name: r.name,
  sealedValue: r.sealed_value,
  version: r.version,
  sealFormat: r.seal_format,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

const credentialByName = new PreparedQuery<{ tenantId: string; name: string }, Parameters<typeof toRow>[0]>((db, slot) =>
  db
    .selectFrom("credentials")
    .select(["id", "tenant_id", "name", "sealed_value", "version", "seal_format", "created_at", "updated_at"])
    .where("tenant_id", "=", slot("tenantId"))
    .where("name", "=", slot("name")),
);

/**
 * On the path of every credentials/get (through the read connection when
 * there is one) and every upsert (in its transaction).
 */
export async function findCredentialByName(db: Db, tenantId: string, name: string): Promise<CredentialRow | undefined> {
  if (isPostgres(db) && !db.isTransaction) return lookups(db).submit({ tenantId, name });
  const row = await credentialByName.readFirst(db, { tenantId, name });
  return row && toRow(row);
}

type Lookup = { tenantId: string; name: string };
const lookupBatchers = new WeakMap<Db, Batcher<Lookup, CredentialRow | undefined>>();

/**
 * On PostgreSQL, outside a transaction: reads that arrive together share one
 * query, as API key lookups do (a round trip each is most of a
 * credentials/get's cost there).
 */
function lookups(db: Db): Batcher<Lookup, CredentialRow | undefined> {
  let batcher = lookupBatchers.get(db);
  if (!batcher) {
    batcher = new Batcher(async (wanted) => {
      const pairs = [...new Map(wanted.map((w) => [`${w.tenantId}\u0000${w.name}`, w])).values()];
      const rows =
        pairs.length === 1
          ? await credentialByName.execute(db, pairs[0]!)
          : await db
              .selectFrom("credentials")
              .select(["id", "tenant_id", "name", "sealed_value", "version", "seal_format", "created_at", "updated_at"])
              .where(({ eb, refTuple, tuple }) => eb(refTuple("tenant_id", "name"), "in", pairs.map((p) => tuple(p.tenantId, p.name))))
              .execute();
      const found = new Map(rows.map((r) => [`${r.tenant_id}\u0000${r.name}`, toRow(r)]));
      return wanted.map((w) => found.get(`${w.tenantId}\u0000${w.name}`));
    });
    lookupBatchers.set(db, batcher);
  }
  return batcher;
}

/** A tenant's credentials of these names (one query, for a batch of upserts). */
export async function findCredentialsByNames(db: Db, tenantId: string, names: readonly string[]): Promise<CredentialRow[]> {
  if (names.length === 0) return [];
  const rows = await db.selectFrom("credentials").selectAll().where("tenant_id", "=", tenantId).where("name", "in", names).execute();
  return rows.map(toRow);
}

/** The column of each field of a row (every field: the type checks it). */
const COLUMN_OF = {
  id: "id",
  tenantId: "tenant_id",
  name: "name",
  sealedValue: "sealed_value",
  version: "version",
  sealFormat: "seal_format",
  createdAt: "created_at",
  updatedAt: "updated_at",
} as const satisfies Record<keyof CredentialRow, string>;
const FIELDS = Object.keys(COLUMN_OF) as (keyof CredentialRow)[];

// One insert per row count: a batch of upserts inserts at most the Batcher's
// 64 new credentials at once, a create one.
const inserts = new PreparedQueries<Record<string, unknown>, never>(
  (count) =>
    new PreparedQuery<Record<string, unknown>, never>((db, slot) =>
      db
        .insertInto("credentials")
        .values(Array.from({ length: Number(count) }, (_, i) => Object.fromEntries(FIELDS.map((field) => [COLUMN_OF[field], slot(`${field}${i}`)])) as never)),
    ),
);

/** New credentials, in one statement (prepared once per row count). */
export async function insertCredentials(db: Db, rows: readonly CredentialRow[]): Promise<void> {
  if (rows.length === 0) return;
  const input: Record<string, unknown> = {};
  rows.forEach((row, i) => {
    for (const field of FIELDS) input[`${field}${i}`] = row[field];
  });
  await inserts.for(rows.length).execute(db, input);
}

export async function insertCredential(db: Db, row: CredentialRow): Promise<void> {
  await insertCredentials(db, [row]);
}

export async function findCredentialById(db: Db, tenantId: string, id: string): Promise<CredentialRow | undefined> {
  const row = await db
    .selectFrom("credentials")
    .selectAll()
    .where("tenant_id", "=", tenantId)
    .where("id", "=", id)
    .executeTakeFirst();
  return row && toRow(row);
}

export async function listCredentials(db: Db, tenantId: string, page: { afterName?: string; limit?: number } = {}): Promise<CredentialSummary[]> {
  let query = db.selectFrom("credentials").select(["id", "name", "created_at", "updated_at"]).where("tenant_id", "=", tenantId);
  if (page.afterName !== undefined) query = query.where("name", ">", page.afterName);
  if (page.limit !== undefined) query = query.limit(page.limit);
  const rows = await query.orderBy("name").execute();
  return rows.map((r) => ({ id: r.id, name: r.name, createdAt: r.created_at, updatedAt: r.updated_at }));
}

const replace = new PreparedQuery<{ tenantId: string; id: string; sealedValue: Uint8Array; version: number; sealFormat: number; updatedAt: string }, never>(
  (db, slot) =>
    db
      .updateTable("credentials")
      .set({ sealed_value: slot("sealedValue"), version: slot("version"), seal_format: slot("sealFormat"), updated_at: slot("updatedAt") })
      .where("tenant_id", "=", slot("tenantId"))
      .where("id", "=", slot("id")),
);

/** A new value, as an upsert writes it (updateCredential writes any other change). */
export async function replaceValue(
  db: Db,
  tenantId: string,
  id: string,
  change: { sealedValue: Uint8Array; version: number; sealFormat: number; updatedAt: string },
): Promise<void> {
  await replace.execute(db, { tenantId, id, ...change });
}

export async function updateCredential(
  db: Db,
  tenantId: string,
  id: string,
  change: { name?: string; sealedValue?: Uint8Array; version?: number; sealFormat?: number; updatedAt: string },
): Promise<void> {
  await db
    .updateTable("credentials")
    .set({
      ...(change.name !== undefined && { name: change.name }),
      ...(change.sealedValue !== undefined && { sealed_value: change.sealedValue }),
      ...(change.version !== undefined && { version: change.version }),
      ...(change.sealFormat !== undefined && { seal_format: change.sealFormat }),
      updated_at: change.updatedAt,
    })
    .where("tenant_id", "=", tenantId)
    .where("id", "=", id)
    .execute();
}

/** Every credential whose value is sealed in an older format than `format`, of all tenants. */
export async function listCredentialsSealedBefore(db: Db, format: number): Promise<CredentialRow[]> {
  const rows = await db.selectFrom("credentials").selectAll().where("seal_format", "<", format).orderBy("id").execute();
  return rows.map(toRow);
}

export async function deleteCredential(db: Db, tenantId: string, id: string): Promise<void> {
  await db.deleteFrom("credentials").where("tenant_id", "=", tenantId).where("id", "=", id).execute();
}

/** The jobs (queued or running, by the reference invariant) that hold this credential. */
export async function listReferencingJobIds(db: Db, tenantId: string, credentialId: string): Promise<string[]> {
  const rows = await db
    .selectFrom("job_credentials")
    .select("job_id")
    .where("tenant_id", "=", tenantId)
    .where("credential_id", "=", credentialId)
    .orderBy("job_id")
    .execute();
  return rows.map((r) => r.job_id);
}

/** Every reference the tenant's queued or running jobs hold: which jobs hold which credential now (for the dashboard). */
export async function listReferences(db: Db, tenantId: string): Promise<{ credential_id: string; job_id: string; workflow: string; status: string }[]> {
  return db
    .selectFrom("job_credentials as r")
    .innerJoin("jobs as j", "j.id", "r.job_id")
    .select(["r.credential_id", "r.job_id", "j.workflow", "j.status"])
    .where("r.tenant_id", "=", tenantId)
    .orderBy("r.job_id")
    .execute();
}
