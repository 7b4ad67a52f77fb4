import pg from "pg";

/**
 * The PostgreSQL side of the test suite. With UNDERSTUDY_TEST_DATABASE_URL
 * (a throwaway cluster's URL, e.g. from .ci/run) and
 * UNDERSTUDY_TEST_ENGINE=postgres, every test server gets a fresh schema of
 * its own on that database instead of a fresh SQLite file; `npm test` runs
 * the suite once per engine (scripts/test.ts).
 */
export const testDatabaseUrl = process.env.UNDERSTUDY_TEST_DATABASE_URL?.trim() || undefined;
export const onPostgres = process.env.UNDERSTUDY_TEST_ENGINE === "postgres";
if (onPostgres && !testDatabaseUrl) throw new Error("UNDERSTUDY_TEST_ENGINE=postgres needs UNDERSTUDY_TEST_DATABASE_URL");

let admin: pg.Pool | undefined;
let counter = 0;

/** A new, empty schema on the test database, and the URL whose connections use it. */
export async function freshSchema(): Promise<{ url: string; schema: string; drop(): Promise<void> }> {
  if (!testDatabaseUrl) throw new Error("UNDERSTUDY_TEST_DATABASE_URL is not set");
  admin ??= new pg.Pool({ connectionString: testDatabaseUrl, max: 2 });
  const schema = `t_${process.pid}_${Date.now().toString(36)}_${counter++}`;
  await admin.query(`CREATE SCHEMA ${schema}`);
  const url = new URL(testDatabaseUrl);
  url.searchParams.set("options", `-c search_path=${schema}`);
  return {
    url: url.toString(),
    schema,
    drop: async () => {
      await admin!.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    },
  };
}

/** The rows of a table in a test schema, for tests that look at stored data as an attacker with the database would. */
export async function rawRows(schemaUrl: string, query: string): Promise<Record<string, unknown>[]> {
  const client = new pg.Client({ connectionString: schemaUrl });
  await client.connect();
  try {
    return (await client.query(query)).rows;
  } finally {
    await client.end();
  }
}
