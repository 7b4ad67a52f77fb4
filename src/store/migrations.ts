import { PostgresAdapter, sql, type ColumnDefinitionBuilder, type Kysely, type Migration } from "kysely";

/**
 * The two engines' words for the same columns: bytes are BLOB in SQLite and
 * BYTEA in PostgreSQL; an ever-growing key is SQLite's INTEGER PRIMARY KEY
 * AUTOINCREMENT and PostgreSQL's BIGSERIAL (read back as a number).
 */
const onPostgres = (db: Kysely<any>) => db.getExecutor().adapter instanceof PostgresAdapter;
const blob = (db: Kysely<any>) => (onPostgres(db) ? "bytea" : "blob");
const autoIncrementKey = (db: Kysely<any>): ["bigserial" | "integer", (c: ColumnDefinitionBuilder) => ColumnDefinitionBuilder] =>
  onPostgres(db) ? ["bigserial", (c) => c.primaryKey()] : ["integer", (c) => c.primaryKey().autoIncrement()];

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
        .addColumn("key_check", blob(db), (c) => c.notNull())
        .addColumn("created_at", "text", (c) => c.notNull())
        .addColumn("rotated_at", "text")
        .execute();

      await db.schema
        .createTable("tenant_keys")
        .addColumn("tenant_id", "text", (c) => c.primaryKey().references("tenants.id"))
        .addColumn("master_key_id", "text", (c) => c.notNull())
        .addColumn("wrapped_key", blob(db), (c) => c.notNull())
        .addColumn("created_at", "text", (c) => c.notNull())
        .addColumn("rotated_at", "text")
        .execute();

      await db.schema
        .createTable("credentials")
        .addColumn("id", "text", (c) => c.primaryKey())
        .addColumn("tenant_id", "text", (c) => c.notNull().references("tenants.id"))
        .addColumn("name", "text", (c) => c.notNull())
        .addColumn("sealed_value", blob(db), (c) => c.notNull())
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
        .addColumn("id", ...autoIncrementKey(db))
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
  "0002_jobs": {
    async up(db: Kysely<any>) {
      // seq orders jobs (claims, fairness, list cursors); id is the public UUID.
      await db.schema
        .createTable("jobs")
        .addColumn("seq", ...autoIncrementKey(db))
        .addColumn("id", "text", (c) => c.notNull().unique())
        .addColumn("tenant_id", "text", (c) => c.notNull().references("tenants.id"))
        .addColumn("workflow", "text", (c) => c.notNull())
        .addColumn("workflow_id", "text", (c) => c.notNull())
        .addColumn("deployment_id", "text")
        .addColumn("deployment_version", "text")
        .addColumn("params", "text", (c) => c.notNull())
        .addColumn("sealed_params_credentials", blob(db))
        .addColumn("status", "text", (c) => c.notNull())
        .addColumn("failure_class", "text")
        .addColumn("result", "text")
        .addColumn("error", "text")
        .addColumn("mapped_stack", "text")
        .addColumn("nonce", "text")
        .addColumn("timeout_seconds", "integer", (c) => c.notNull())
        .addColumn("options", "text", (c) => c.notNull())
        .addColumn("callback_url", "text")
        .addColumn("sealed_callback_secret", blob(db))
        .addColumn("skip_callbacks", "integer", (c) => c.notNull().defaultTo(0))
        .addColumn("schedule_id", "text")
        .addColumn("created_at", "text", (c) => c.notNull())
        .addColumn("started_at", "text")
        .addColumn("completed_at", "text")
        .addColumn("cancel_requested_at", "text")
        .execute();
      await db.schema.createIndex("jobs_status_tenant").on("jobs").columns(["status", "tenant_id", "seq"]).execute();
      await db.schema.createIndex("jobs_tenant_seq").on("jobs").columns(["tenant_id", "seq"]).execute();

      await db.schema
        .createTable("job_logs")
        .addColumn("id", ...autoIncrementKey(db))
        .addColumn("job_id", "text", (c) => c.notNull())
        .addColumn("tenant_id", "text", (c) => c.notNull())
        .addColumn("workflow", "text", (c) => c.notNull())
        .addColumn("level", "text", (c) => c.notNull())
        .addColumn("message", "text", (c) => c.notNull())
        .addColumn("timestamp", "text", (c) => c.notNull())
        .execute();
      await db.schema.createIndex("job_logs_job").on("job_logs").columns(["job_id", "id"]).execute();
      await db.schema.createIndex("job_logs_tenant").on("job_logs").columns(["tenant_id", "id"]).execute();

      await db.schema
        .createTable("tenant_settings")
        .addColumn("tenant_id", "text", (c) => c.primaryKey().references("tenants.id"))
        .addColumn("disable_job_failure_notifications", "integer", (c) => c.notNull().defaultTo(0))
        .addColumn("updated_at", "text", (c) => c.notNull())
        .execute();
    },
  },
  "0003_webhooks_schedules": {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable("webhook_endpoints")
        .addColumn("id", "text", (c) => c.primaryKey())
        .addColumn("tenant_id", "text", (c) => c.notNull().references("tenants.id"))
        .addColumn("url", "text", (c) => c.notNull())
        .addColumn("sealed_secret", blob(db), (c) => c.notNull())
        .addColumn("description", "text")
        .addColumn("active", "integer", (c) => c.notNull())
        .addColumn("disabled_reason", "text")
        .addColumn("created_at", "text", (c) => c.notNull())
        .addColumn("updated_at", "text", (c) => c.notNull())
        .execute();
      await db.schema.createIndex("webhook_endpoints_tenant").on("webhook_endpoints").columns(["tenant_id", "created_at"]).execute();

      // The outbox: one row per delivery to one URL, written in the transaction
      // that ends the job. endpoint_id is null for a job's own callback_url.
      await db.schema
        .createTable("webhook_deliveries")
        .addColumn("seq", ...autoIncrementKey(db))
        .addColumn("id", "text", (c) => c.notNull().unique())
        .addColumn("tenant_id", "text", (c) => c.notNull().references("tenants.id"))
        .addColumn("job_id", "text", (c) => c.notNull())
        .addColumn("endpoint_id", "text")
        .addColumn("url", "text", (c) => c.notNull())
        .addColumn("event", "text", (c) => c.notNull())
        .addColumn("payload", "text", (c) => c.notNull())
        .addColumn("status", "text", (c) => c.notNull())
        .addColumn("attempts", "integer", (c) => c.notNull().defaultTo(0))
        .addColumn("next_attempt_at", "text")
        .addColumn("last_status_code", "integer")
        .addColumn("last_error", "text")
        .addColumn("last_duration_ms", "integer")
        .addColumn("response_excerpt", "text")
        .addColumn("created_at", "text", (c) => c.notNull())
        .addColumn("updated_at", "text", (c) => c.notNull())
        .addColumn("completed_at", "text")
        .execute();
      await db.schema.createIndex("webhook_deliveries_due").on("webhook_deliveries").columns(["status", "next_attempt_at"]).execute();
      await db.schema.createIndex("webhook_deliveries_tenant").on("webhook_deliveries").columns(["tenant_id", "seq"]).execute();

      await db.schema
        .createTable("schedules")
        .addColumn("id", "text", (c) => c.primaryKey())
        .addColumn("tenant_id", "text", (c) => c.notNull().references("tenants.id"))
        .addColumn("workflow", "text", (c) => c.notNull())
        .addColumn("params", "text", (c) => c.notNull())
        .addColumn("sealed_params_credentials", blob(db))
        .addColumn("cron_expr", "text", (c) => c.notNull())
        .addColumn("timezone", "text", (c) => c.notNull())
        .addColumn("timeout_seconds", "integer", (c) => c.notNull())
        .addColumn("options", "text", (c) => c.notNull())
        .addColumn("callback_url", "text")
        .addColumn("sealed_callback_secret", blob(db))
        .addColumn("skip_callbacks", "integer", (c) => c.notNull().defaultTo(0))
        .addColumn("enabled", "integer", (c) => c.notNull())
        .addColumn("overlap_policy", "text", (c) => c.notNull())
        .addColumn("next_fire_at", "text")
        .addColumn("last_fire_at", "text")
        .addColumn("last_job_id", "text")
        .addColumn("last_error", "text")
        .addColumn("consecutive_failures", "integer", (c) => c.notNull().defaultTo(0))
        .addColumn("created_at", "text", (c) => c.notNull())
        .addColumn("updated_at", "text", (c) => c.notNull())
        .execute();
      await db.schema.createIndex("schedules_due").on("schedules").columns(["enabled", "next_fire_at"]).execute();
      await db.schema.createIndex("schedules_tenant").on("schedules").columns(["tenant_id", "created_at"]).execute();
    },
  },
  "0004_deployments": {
    async up(db: Kysely<any>) {
      // A tenant's uploaded workflow code. The files live in the deployments
      // directory (<data dir>/deployments/<tenant>/<id>/); the row says what
      // is there and whether it is ready.
      await db.schema
        .createTable("deployments")
        .addColumn("id", "text", (c) => c.primaryKey())
        .addColumn("tenant_id", "text", (c) => c.notNull().references("tenants.id"))
        .addColumn("version", "integer", (c) => c.notNull())
        .addColumn("status", "text", (c) => c.notNull())
        .addColumn("entry_point", "text", (c) => c.notNull())
        .addColumn("description", "text")
        .addColumn("auto_repair", "integer", (c) => c.notNull().defaultTo(0))
        .addColumn("build_error", "text")
        .addColumn("upload_bytes", "integer", (c) => c.notNull())
        .addColumn("unpacked_bytes", "integer", (c) => c.notNull())
        .addColumn("created_at", "text", (c) => c.notNull())
        .addColumn("updated_at", "text", (c) => c.notNull())
        .addColumn("ready_at", "text")
        .execute();
      await db.schema.createIndex("deployments_tenant_version").on("deployments").columns(["tenant_id", "version"]).unique().execute();

      // The workflows a ready deployment holds. A tenant's workflow of a name
      // is the one of its newest ready deployment that has the name.
      await db.schema
        .createTable("deployment_workflows")
        .addColumn("deployment_id", "text", (c) => c.notNull().references("deployments.id"))
        .addColumn("tenant_id", "text", (c) => c.notNull())
        .addColumn("name", "text", (c) => c.notNull())
        .addColumn("version", "integer", (c) => c.notNull())
        .addColumn("credential_names", "text", (c) => c.notNull())
        .addColumn("input_schema", "text")
        .addColumn("output_schema", "text")
        .addColumn("start_url", "text")
        .addColumn("viewport", "text")
        .addColumn("auth_profile_name", "text")
        .addColumn("auth_profile_refresh", "integer")
        .addColumn("created_at", "text", (c) => c.notNull())
        .addPrimaryKeyConstraint("deployment_workflows_pk", ["deployment_id", "name"])
        .execute();
      await db.schema.createIndex("deployment_workflows_lookup").on("deployment_workflows").columns(["tenant_id", "name", "version"]).execute();
    },
  },
  "0005_credential_seal_format": {
    async up(db: Kysely<any>) {
      // What a credential's sealed value is bound to: 1, its tenant, id and
      // version; 2, also its name. Rows of 1 are re-sealed as 2 at start,
      // once the vault is open (src/credentials/service.ts, upgradeCredentialSeals).
      await db.schema.alterTable("credentials").addColumn("seal_format", "integer", (c) => c.notNull().defaultTo(1)).execute();
    },
  },
  "0006_browser_profiles": {
    async up(db: Kysely<any>) {
      // A tenant's named browser state (Playwright storageState), sealed like
      // a credential value (src/profiles/service.ts). A profile made by
      // browserProfiles/ensure has no state until one is uploaded or a
      // refreshing job saves one.
      await db.schema
        .createTable("browser_profiles")
        .addColumn("id", "text", (c) => c.primaryKey())
        .addColumn("tenant_id", "text", (c) => c.notNull().references("tenants.id"))
        .addColumn("name", "text", (c) => c.notNull())
        .addColumn("sealed_state", blob(db))
        .addColumn("version", "integer", (c) => c.notNull())
        .addColumn("created_at", "text", (c) => c.notNull())
        .addColumn("updated_at", "text", (c) => c.notNull())
        .execute();
      await db.schema.createIndex("browser_profiles_tenant_name").on("browser_profiles").columns(["tenant_id", "name"]).unique().execute();

      // The profile a queued or running job uses: it cannot be deleted until the job ends.
      await db.schema
        .createTable("job_profiles")
        .addColumn("job_id", "text", (c) => c.notNull())
        .addColumn("profile_id", "text", (c) => c.notNull())
        .addColumn("tenant_id", "text", (c) => c.notNull())
        .addColumn("created_at", "text", (c) => c.notNull())
        .addPrimaryKeyConstraint("job_profiles_pk", ["job_id", "profile_id"])
        .execute();
      await db.schema.createIndex("job_profiles_profile").on("job_profiles").column("profile_id").execute();
    },
  },
  "0007_job_artifacts": {
    async up(db: Kysely<any>) {
      // What a browser job left to look at: screenshots and Playwright traces,
      // their bytes here (covered by backups, deleted in the same transaction
      // as their row). Pruned by age and by a size cap per tenant (src/artifacts/retention.ts).
      await db.schema
        .createTable("job_artifacts")
        .addColumn("id", "text", (c) => c.primaryKey())
        .addColumn("tenant_id", "text", (c) => c.notNull().references("tenants.id"))
        .addColumn("job_id", "text", (c) => c.notNull())
        .addColumn("kind", "text", (c) => c.notNull())
        .addColumn("content_type", "text", (c) => c.notNull())
        .addColumn("size_bytes", "integer", (c) => c.notNull())
        .addColumn("bytes", blob(db), (c) => c.notNull())
        .addColumn("created_at", "text", (c) => c.notNull())
        .execute();
      await db.schema.createIndex("job_artifacts_job").on("job_artifacts").columns(["tenant_id", "job_id"]).execute();
      await db.schema.createIndex("job_artifacts_created").on("job_artifacts").columns(["created_at"]).execute();
      await db.schema.createIndex("job_artifacts_tenant_created").on("job_artifacts").columns(["tenant_id", "created_at"]).execute();
      // Pruning finds finished jobs' logs and deliveries by age.
      await db.schema.createIndex("jobs_completed_at").on("jobs").columns(["completed_at"]).execute();
      await db.schema.createIndex("webhook_deliveries_completed").on("webhook_deliveries").columns(["status", "completed_at"]).execute();
    },
  },
  "0008_session_recordings": {
    async up(db: Kysely<any>) {
      // Screenshots of a remote session's pages (src/sessions/recording.ts):
      // periodic frames and a final one when it ends. Pruned with the job
      // artifacts' retention (UNDERSTUDY_ARTIFACT_RETENTION_DAYS), counted
      // toward no size cap.
      await db.schema
        .createTable("session_recording_frames")
        .addColumn("id", "text", (c) => c.primaryKey())
        .addColumn("tenant_id", "text", (c) => c.notNull().references("tenants.id"))
        .addColumn("session_id", "text", (c) => c.notNull())
        .addColumn("size_bytes", "integer", (c) => c.notNull())
        .addColumn("bytes", blob(db), (c) => c.notNull())
        .addColumn("created_at", "text", (c) => c.notNull())
        .execute();
      await db.schema.createIndex("session_recording_frames_session").on("session_recording_frames").columns(["session_id", "created_at"]).execute();
      await db.schema.createIndex("session_recording_frames_created").on("session_recording_frames").columns(["created_at"]).execute();
      // The view URLs' tokens (recordings/get mints one per call): SHA-256 hashes only.
      await db.schema
        .createTable("session_recording_tokens")
        .addColumn("id", "text", (c) => c.primaryKey())
        .addColumn("tenant_id", "text", (c) => c.notNull().references("tenants.id"))
        .addColumn("session_id", "text", (c) => c.notNull())
        .addColumn("token_hash", "text", (c) => c.notNull())
        .addColumn("created_at", "text", (c) => c.notNull())
        .execute();
      await db.schema.createIndex("session_recording_tokens_session").on("session_recording_tokens").columns(["session_id", "created_at"]).execute();
    },
  },
  "0009_job_leases": {
    async up(db: Kysely<any>) {
      // Several instances on one PostgreSQL (issue 11): a running job is
      // leased by the instance that runs it (its random id), which renews
      // the lease while it runs. A lease that lapses means that instance is
      // gone: any instance then ends the job interrupted.
      await db.schema.alterTable("jobs").addColumn("lease_owner", "text").execute();
      await db.schema.alterTable("jobs").addColumn("lease_expires_at", "text").execute();
      if (onPostgres(db)) {
        // A queued job wakes every instance's runner (LISTEN understudy_jobs);
        // the payload names the schema, as one database may hold several.
        // Once per statement: a batch of jobs is one wake-up.
        await sql`
          CREATE FUNCTION understudy_notify_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
          BEGIN
            PERFORM pg_notify('understudy_jobs', TG_TABLE_SCHEMA);
            RETURN NULL;
          END $$`.execute(db);
        await sql`
          CREATE TRIGGER jobs_notify_insert AFTER INSERT ON jobs
          FOR EACH STATEMENT EXECUTE FUNCTION understudy_notify_jobs()`.execute(db);
      }
    },
  },
  "0010_deployment_archives": {
    async up(db: Kysely<any>) {
      // Each deployment's upload (the gzip'd tar as sent, decoded from
      // base64), so any instance can unpack it on first use: with several
      // instances the one that ran the upload is not the one that runs its
      // jobs. A table of its own so that reading deployment rows never drags
      // the bytes along. Only deployments and tenants are referenced, so this
      // stands alone among the migrations added beside it.
      await db.schema
        .createTable("deployment_archives")
        .addColumn("deployment_id", "text", (c) => c.primaryKey().references("deployments.id"))
        .addColumn("tenant_id", "text", (c) => c.notNull().references("tenants.id"))
        .addColumn("sha256", "text", (c) => c.notNull())
        .addColumn("size_bytes", "integer", (c) => c.notNull())
        .addColumn("bytes", blob(db), (c) => c.notNull())
        .addColumn("created_at", "text", (c) => c.notNull())
        .execute();
      await db.schema.createIndex("deployment_archives_tenant").on("deployment_archives").columns(["tenant_id"]).execute();
      // A build in progress is held by an instance until this time, which it
      // renews while it builds; a build whose holder died is taken over by
      // another instance once it lapses (null: held by no one).
      await db.schema.alterTable("deployments").addColumn("build_lease_until", "text").execute();
    },
  },
  "0011_dashboard_sessions": {
    async up(db: Kysely<any>) {
      // The web dashboard's sign-ins (issue 12). A row is a session (kind
      // "session") or a one-time sign-in link (kind "link", printed by
      // `understudy dev`). Only the SHA-256 of its token is kept. Each row
      // belongs to the API key that made it: revoking the key ends it.
      await db.schema
        .createTable("dashboard_sessions")
        .addColumn("id", "text", (c) => c.primaryKey())
        .addColumn("token_hash", "text", (c) => c.notNull().unique())
        .addColumn("kind", "text", (c) => c.notNull())
        .addColumn("tenant_id", "text", (c) => c.notNull().references("tenants.id"))
        .addColumn("api_key_id", "text", (c) => c.notNull().references("api_keys.id"))
        .addColumn("created_at", "text", (c) => c.notNull())
        .addColumn("expires_at", "text", (c) => c.notNull())
        .execute();
      await db.schema.createIndex("dashboard_sessions_expiry").on("dashboard_sessions").columns(["expires_at"]).execute();
      // The dashboard's audit page: one tenant's events, newest first, by id.
      await db.schema.createIndex("audit_events_tenant_id").on("audit_events").columns(["tenant_id", "id"]).execute();
    },
  },
  "0012_audit_events_one_index": {
    async up(db: Kysely<any>) {
      // Every credentials/get writes an audit row, so each index on the table
      // is paid on the read path (issue 13: ~20% of an audit insert's cost,
      // measured). (tenant_id, at) serves no query: the audit page and the
      // CLI read by id, which orders events as their time does.
      await db.schema.dropIndex("audit_events_tenant_at").execute();
    },
  },
};
