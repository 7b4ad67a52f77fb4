/**
 * `npm test`: the type check, then the whole suite on SQLite, then again on
 * PostgreSQL when UNDERSTUDY_TEST_DATABASE_URL names a throwaway database
 * (.ci/run starts one). Extra arguments (files, --test-name-pattern) go to
 * both `bun test` runs. The PostgreSQL pass is never skipped silently.
 */
import { spawnSync } from "node:child_process";
import { describeDatabaseUrl } from "../src/store/postgres";

const bin = "node_modules/.bin";
const extra = process.argv.slice(2);

function run(label: string, command: string, args: string[], env: NodeJS.ProcessEnv = process.env): boolean {
  console.error(`\n== test: ${label}: ${command} ${args.join(" ")}`);
  const result = spawnSync(command, args, { stdio: "inherit", env });
  if (result.error) console.error(`test: ${label}: ${result.error.message}`);
  return result.status === 0;
}

if (!run("type check", `${bin}/tsc`, ["--noEmit"])) process.exit(1);

const results: Array<[string, boolean]> = [];
const url = process.env.UNDERSTUDY_TEST_DATABASE_URL?.trim();
// The SQLite pass runs without the PostgreSQL settings, whatever the caller's
// environment says: the tests that need PostgreSQL (test/multi, the pg_dump
// backups) skip there and run in the PostgreSQL pass, not twice.
const sqliteEnv = { ...process.env };
delete sqliteEnv.UNDERSTUDY_TEST_ENGINE;
if (url) {
  delete sqliteEnv.UNDERSTUDY_TEST_DATABASE_URL;
  delete sqliteEnv.UNDERSTUDY_TEST_REQUIRE_POSTGRES;
  console.error("test: the tests that need PostgreSQL skip in the SQLite pass (NOTICEs below) and run in the PostgreSQL pass.");
}
results.push(["SQLite", run("SQLite", `${bin}/bun`, ["test", "--timeout", "30000", ...extra], sqliteEnv)]);

if (url) {
  const env = { ...process.env, UNDERSTUDY_TEST_ENGINE: "postgres" };
  results.push([describeDatabaseUrl(url), run("PostgreSQL", `${bin}/bun`, ["test", "--timeout", "30000", ...extra], env)]);
} else {
  console.error(
    "\ntest: NOTICE: SKIPPED the PostgreSQL pass: UNDERSTUDY_TEST_DATABASE_URL is not set. " +
      "Set it to a throwaway database (e.g. postgres://postgres@127.0.0.1:5432/postgres) to run the suite on PostgreSQL too; .ci/run starts one.",
  );
}

console.error("\n== test: summary");
for (const [engine, ok] of results) console.error(`  ${engine}: ${ok ? "passed" : "FAILED"}`);
process.exit(results.every(([, ok]) => ok) ? 0 : 1);
