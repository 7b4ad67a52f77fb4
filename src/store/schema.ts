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
  webhook_endpoints: WebhookEndpointsTable;
  webhook_deliveries: WebhookDeliveriesTable;
  schedules: SchedulesTable;
  deployments: DeploymentsTable;
  deployment_workflows: DeploymentWorkflowsTable;
  deployment_archives: DeploymentArchivesTable;
  browser_profiles: BrowserProfilesTable;
  job_profiles: JobProfilesTable;
  job_artifacts: JobArtifactsTable;
  session_recording_frames: SessionRecordingFramesTable;
  session_recording_tokens: SessionRecordingTokensTable;
  dashboard_sessions: DashboardSessionsTable;
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
  /** What sealed_value's associated data binds (src/credentials/service.ts): 2 includes the name. */
  seal_format: Generated<number>;
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
  /** The instance running the job (its random id), on PostgreSQL with several instances. */
  lease_owner: string | null;
  /** When the running job's lease lapses unless its instance renews it (ISO). */
  lease_expires_at: string | null;
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

export interface WebhookEndpointsTable {
  id: string;
  tenant_id: string;
  url: string;
  /** The signing secret, sealed by the vault. */
  sealed_secret: Uint8Array;
  description: string | null;
  active: number;
  /** Why the server turned it off (e.g. the receiver answered 410). */
  disabled_reason: string | null;
  created_at: string;
  updated_at: string;
}

export interface WebhookDeliveriesTable {
  seq: Generated<number>;
  /** Also the Standard Webhooks webhook-id: stable across retries. */
  id: string;
  tenant_id: string;
  job_id: string;
  /** Null for a job's own callback_url (its secret is the job's). */
  endpoint_id: string | null;
  url: string;
  event: string;
  /** The JSON body, fixed when the job ends (delivered_at is set per attempt). */
  payload: string;
  /** pending | succeeded | failed */
  status: string;
  attempts: number;
  next_attempt_at: string | null;
  last_status_code: number | null;
  last_error: string | null;
  last_duration_ms: number | null;
  response_excerpt: string | null;
  created_at: string;
  updated_at: string;
  completed_at: string | null;
}

export interface SchedulesTable {
  id: string;
  tenant_id: string;
  workflow: string;
  /** JSON of the params without `credentials` (those are sealed). */
  params: string;
  sealed_params_credentials: Uint8Array | null;
  cron_expr: string;
  timezone: string;
  timeout_seconds: number;
  /** JSON: start_url, viewport, gpu, residential_proxy, disable_default_proxy. */
  options: string;
  callback_url: string | null;
  sealed_callback_secret: Uint8Array | null;
  skip_callbacks: number;
  enabled: number;
  /** skip | allow */
  overlap_policy: string;
  next_fire_at: string | null;
  last_fire_at: string | null;
  last_job_id: string | null;
  last_error: string | null;
  consecutive_failures: number;
  created_at: string;
  updated_at: string;
}

export interface DeploymentsTable {
  id: string;
  tenant_id: string;
  /** 1, 2, 3... per tenant: jobs show it as deployment_version. */
  version: number;
  /** building | ready | failed */
  status: string;
  entry_point: string;
  description: string | null;
  auto_repair: number;
  build_error: string | null;
  upload_bytes: number;
  unpacked_bytes: number;
  created_at: string;
  updated_at: string;
  ready_at: string | null;
  /** While `building`: the instance building it holds it until then (ISO time); null when no one does. */
  build_lease_until: string | null;
}

/** A deployment's upload as sent (gzip'd tar): any instance unpacks it from here on first use. */
export interface DeploymentArchivesTable {
  deployment_id: string;
  tenant_id: string;
  /** Hex SHA-256 of `bytes`, checked before they are unpacked. */
  sha256: string;
  size_bytes: number;
  bytes: Uint8Array;
  created_at: string;
}

export interface DeploymentWorkflowsTable {
  deployment_id: string;
  tenant_id: string;
  name: string;
  /** The deployment's version, copied so "newest per name" is one index lookup. */
  version: number;
  /** JSON array of the declared credential names (trimmed, lowercased). */
  credential_names: string;
  /** JSON Schema as JSON text (from .libretto-workflows.json), or null. */
  input_schema: string | null;
  output_schema: string | null;
  start_url: string | null;
  /** JSON {width, height}, or null. */
  viewport: string | null;
  auth_profile_name: string | null;
  auth_profile_refresh: number | null;
  created_at: string;
}

export interface BrowserProfilesTable {
  id: string;
  tenant_id: string;
  name: string;
  /** The sealed storageState JSON; null until a state is uploaded or saved by a job. */
  sealed_state: Uint8Array | null;
  version: number;
  created_at: string;
  updated_at: string;
}

export interface JobProfilesTable {
  job_id: string;
  profile_id: string;
  tenant_id: string;
  created_at: string;
}

export interface JobArtifactsTable {
  id: string;
  tenant_id: string;
  job_id: string;
  /** screenshot | trace */
  kind: string;
  content_type: string;
  size_bytes: number;
  bytes: Uint8Array;
  created_at: string;
}

export interface SessionRecordingFramesTable {
  id: string;
  tenant_id: string;
  session_id: string;
  size_bytes: number;
  /** A PNG. */
  bytes: Uint8Array;
  created_at: string;
}

export interface SessionRecordingTokensTable {
  id: string;
  tenant_id: string;
  session_id: string;
  /** Hex SHA-256 of the view URL's token. */
  token_hash: string;
  created_at: string;
}

export interface DashboardSessionsTable {
  id: string;
  /** Hex SHA-256 of the cookie's (or the sign-in link's) token. */
  token_hash: string;
  kind: "session" | "link";
  tenant_id: string;
  api_key_id: string;
  created_at: string;
  expires_at: string;
}
