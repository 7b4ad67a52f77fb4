import { describe } from "bun:test";
import { join } from "node:path";
import { loadConfig } from "../../src/config";
import { openStore, type OpenedStore } from "../../src/server/start";
import { createApiKey, createTenant } from "../../src/tenants/service";
import { toMasterKey } from "../../src/vault/master-key";
import { systemClock, randomId } from "../../src/clock";
import { newMasterKey, tempDir } from "../helpers";
import { freshSchema, testDatabaseUrl } from "../postgres";
import { startServerProcess, type ServerProcess } from "../process-helpers";

/**
 * Several `understudy serve` processes on one PostgreSQL schema, as behind a
 * load balancer: the multi-instance tests (issue 11). Each instance is a real
 * process (bun src/main.ts serve) with the same master key; the test holds a
 * store of its own on the same schema to seed tenants and look at rows.
 */
export interface Cluster {
  instances: ServerProcess[];
  /** The test's own connection to the schema (its vault opened with the same master key). */
  store: OpenedStore;
  databaseUrl: string;
  masterKey: string;
  keys: { alpha: string; beta: string };
  tenants: { alpha: string; beta: string };
  /** Starts one more instance on the same database (e.g. after a SIGKILL). */
  addInstance(env?: Record<string, string>): Promise<ServerProcess>;
  /** Stops every instance (SIGTERM), closes the test's store and drops the schema. */
  close(): Promise<void>;
}

/** describe() that runs only with a test PostgreSQL (UNDERSTUDY_TEST_DATABASE_URL), saying so when it skips. */
export function describeWithPostgres(name: string, body: () => void): void {
  if (testDatabaseUrl) {
    describe(name, body);
    return;
  }
  if (process.env.UNDERSTUDY_TEST_REQUIRE_POSTGRES === "1") throw new Error(`${name}: UNDERSTUDY_TEST_DATABASE_URL is not set, and CI requires PostgreSQL`);
  console.warn(`NOTICE: SKIPPED "${name}": set UNDERSTUDY_TEST_DATABASE_URL to a PostgreSQL database to run the multi-instance tests`);
  describe.skip(name, body);
}

export async function startCluster(options: { instances: number; workflowsDir: string; env?: Record<string, string> }): Promise<Cluster> {
  const schema = await freshSchema();
  const dir = tempDir("understudy-cluster-");
  const master = newMasterKey();
  const config = loadConfig({ UNDERSTUDY_DATABASE_URL: schema.url, UNDERSTUDY_DB_POOL_SIZE: "4" });
  // Migrates the schema first, so the instances start on a ready database (they migrate too: once, idempotently).
  const store = await openStore(config, join(dir.path, "unused.db"), { current: toMasterKey(master.bytes) });
  const alpha = await createTenant(store.db, systemClock, randomId, "alpha");
  const beta = await createTenant(store.db, systemClock, randomId, "beta");
  const keys = {
    alpha: (await createApiKey(store.db, systemClock, randomId, alpha.id)).key,
    beta: (await createApiKey(store.db, systemClock, randomId, beta.id)).key,
  };
  const instances: ServerProcess[] = [];
  let count = 0;
  const addInstance = async (env: Record<string, string> = {}) => {
    const n = count++;
    const instance = await startServerProcess(["serve"], {
      cwd: dir.path,
      env: {
        UNDERSTUDY_DATABASE_URL: schema.url,
        UNDERSTUDY_MASTER_KEY: master.text,
        UNDERSTUDY_DB: join(dir.path, `instance-${n}`, "understudy.db"),
        UNDERSTUDY_WORKFLOWS_DIR: options.workflowsDir,
        UNDERSTUDY_RATE_LIMIT_PER_SECOND: "0",
        UNDERSTUDY_REQUEST_LOG: "off",
        ...options.env,
        ...env,
      },
      timeoutMs: 30_000,
    });
    instances.push(instance);
    return instance;
  };
  await Promise.all(Array.from({ length: options.instances }, () => addInstance()));
  return {
    instances,
    store,
    databaseUrl: schema.url,
    masterKey: master.text,
    keys,
    tenants: { alpha: alpha.id, beta: beta.id },
    addInstance,
    async close() {
      await Promise.all(instances.map((i) => (i.child.exitCode === null ? i.stop() : Promise.resolve(0))));
      await store.db.destroy();
      await schema.drop();
      dir.remove();
    },
  };
}
