import { sql, type Kysely, type Migration } from "kysely";

/**
 * Migrations live in code: a compiled binary cannot read a migrations folder.
 * Append only; never edit a migration that has shipped. Kysely records the
 * applied names in `kysely_migration`.
 */
export const migrations: Record<string, Migration> = {
  "0001_foundation": {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable("tenants")
        .addColumn("id", "text", (c) => c.primaryKey())
        .addColumn("name", "text", (c) => c.notNull().unique())
        .addColumn("created_at", "text", (c) => c.notNull())
        .execute();

      await db.schema
        .createTable("api_keys")
        .addColumn("id", "text", (c) => c.primaryKey())
        .addColumn("tenant_id", "text", (c) => c.notNull().references("tenants.id"))
        .addColumn("name", "text")
        .addColumn("prefix", "text", (c) => c.notNull())
        .addColumn("key_hash", "text", (c) => c.notNull().unique())
        .addColumn("created_at", "text", (c) => c.notNull())
        .addColumn("last_used_at", "text")
        .addColumn("revoked_at", "text")
        .execute();
      await db.schema.createIndex("api_keys_tenant").on("api_keys").column("tenant_id").execute();

      await db.schema
        .createTable("vault_meta")
        .addColumn("id", "integer", (c) => c.primaryKey().check(sql`id = 1`))
        .addColumn("master_key_id", "text", (c) => c.notNull())
        .addColumn("key_check", "blob", (c) => c.notNull())
        .addColumn("created_at", "text", (c) => c.notNull())
        .addColumn("rotated_at", "text")
        .execute();

      await db.schema
        .createTable("tenant_keys")
        .addColumn("tenant_id", "text", (c) => c.primaryKey().references("tenants.id"))
        .addColumn("master_key_id", "text", (c) => c.notNull())
        .addColumn("wrapped_key", "blob", (c) => c.notNull())
        .addColumn("created_at", "text", (c) => c.notNull())
        .addColumn("rotated_at", "text")
        .execute();

      await db.schema
        .createTable("credentials")
        .addColumn("id", "text", (c) => c.primaryKey())
        .addColumn("tenant_id", "text", (c) => c.notNull().references("tenants.id"))
        .addColumn("name", "text", (c) => c.notNull())
        .addColumn("sealed_value", "blob", (c) => c.notNull())
        .addColumn("version", "integer", (c) => c.notNull())
        .addColumn("created_at", "text", (c) => c.notNull())
        .addColumn("updated_at", "text", (c) => c.notNull())
        .addUniqueConstraint("credentials_tenant_name", ["tenant_id", "name"])
        .execute();

      // The foreign key is the last line of defence: even a bug in the
      // delete check cannot leave a reference to a credential that is gone.
      await db.schema
        .createTable("job_credentials")
        .addColumn("job_id", "text", (c) => c.notNull())
        .addColumn("credential_id", "text", (c) => c.notNull().references("credentials.id"))
        .addColumn("tenant_id", "text", (c) => c.notNull().references("tenants.id"))
        .addColumn("created_at", "text", (c) => c.notNull())
        .addPrimaryKeyConstraint("job_credentials_pk", ["job_id", "credential_id"])
        .execute();
      await db.schema.createIndex("job_credentials_credential").on("job_credentials").column("credential_id").execute();

      await db.schema
        .createTable("audit_events")
        .addColumn("id", "integer", (c) => c.primaryKey().autoIncrement())
        .addColumn("at", "text", (c) => c.notNull())
        .addColumn("tenant_id", "text")
        .addColumn("api_key_id", "text")
        .addColumn("action", "text", (c) => c.notNull())
        .addColumn("outcome", "text", (c) => c.notNull())
        .addColumn("credential_id", "text")
        .addColumn("credential_name", "text")
        .addColumn("detail", "text")
        .execute();
      await db.schema.createIndex("audit_events_tenant_at").on("audit_events").columns(["tenant_id", "at"]).execute();
    },
  },
};
