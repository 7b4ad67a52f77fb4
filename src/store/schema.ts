import type { Generated, Insertable, Selectable } from "kysely";

/** Row types of the database. They stop at the store: routes see domain objects. */
export interface Database {
  tenants: TenantsTable;
  api_keys: ApiKeysTable;
  vault_meta: VaultMetaTable;
  tenant_keys: TenantKeysTable;
  credentials: CredentialsTable;
  job_credentials: JobCredentialsTable;
  audit_events: AuditEventsTable;
  jobs: JobsTable;
  job_logs: JobLogsTable;
  tenant_settings: TenantSettingsTable;
}

export interface TenantsTable {
  id: string;
  name: string;
  created_at: string;
}

export interface ApiKeysTable {
  id: string;
  tenant_id: string;
  name: string | null;
  prefix: string;
  key_hash: string;
  created_at: string;
  last_used_at: string | null;
  revoked_at: string | null;
}

export interface VaultMetaTable {
  id: number;
  master_key_id: string;
  key_check: Uint8Array;
  created_at: string;
  rotated_at: string | null;
}

export interface TenantKeysTable {
  tenant_id: string;
  master_key_id: string;
  wrapped_key: Uint8Array;
  created_at: string;
  rotated_at: string | null;
}

export interface CredentialsTable {
  id: string;
  tenant_id: string;
  name: string;
  sealed_value: Uint8Array;
  version: number;
  created_at: string;
  updated_at: string;
}

/** A queued or running job's hold on a credential; it is what blocks deletion. */
export interface JobCredentialsTable {
  job_id: string;
  credential_id: string;
  tenant_id: string;
  created_at: string;
}

export interface AuditEventsTable {
  id: Generated<number>;
  at: string;
  tenant_id: string | null;
  api_key_id: string | null;
  action: string;
  outcome: string;
  credential_id: string | null;
  credential_name: string | null;
  detail: string | null;
}

export type AuditEventRow = Selectable<AuditEventsTable>;
export type NewAuditEvent = Insertable<AuditEventsTable>;

export interface JobsTable {
  seq: Generated<number>;
  id: string;
  tenant_id: string;
  workflow: string;
  workflow_id: string;
  deployment_id: string | null;
  deployment_version: string | null;
  /** JSON of the caller's params without `credentials`. */
  params: string;
  /** The caller's params.credentials, sealed: never stored in clear. */
  sealed_params_credentials: Uint8Array | null;
  status: string;
  failure_class: string | null;
  result: string | null;
  error: string | null;
  mapped_stack: string | null;
  nonce: string | null;
  timeout_seconds: number;
  /** JSON of the run options: headless, start_url, viewport and the hosted-only flags. */
  options: string;
  callback_url: string | null;
  sealed_callback_secret: Uint8Array | null;
  skip_callbacks: number;
  schedule_id: string | null;
  created_at: string;
  started_at: string | null;
  completed_at: string | null;
  cancel_requested_at: string | null;
}

export interface JobLogsTable {
  id: Generated<number>;
  job_id: string;
  tenant_id: string;
  workflow: string;
  level: string;
  message: string;
  timestamp: string;
}

export interface TenantSettingsTable {
  tenant_id: string;
  disable_job_failure_notifications: number;
  updated_at: string;
}

export type JobRow = Selectable<JobsTable>;
