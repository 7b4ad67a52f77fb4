/**
 * UNDERSTUDY_DATABASE_URL may carry a password: no message Understudy writes
 * about it (a bad setting, a failed connection, the start-up banner) quotes it.
 */
import { expect, test } from "bun:test";
import { loadConfig } from "../../src/config";
import { describeDatabaseUrl, openPostgres } from "../../src/store/postgres";
import { freePort } from "../process-helpers";

const PASSWORD = "pw-Secret-7f3a9c";

function configProblem(env: Record<string, string>, readFile?: (path: string) => string): string {
  try {
    loadConfig(env, readFile);
  } catch (error) {
    return (error as Error).message;
  }
  throw new Error("the configuration was accepted");
}

test("a bad UNDERSTUDY_DATABASE_URL is refused naming the variable and the fix, never the password", () => {
  for (const url of [`mysql://app:${PASSWORD}@db:3306/app`, `postgres//app:${PASSWORD}@db/app`, `postgres://app:${PASSWORD}@/app`]) {
    const problem = configProblem({ UNDERSTUDY_DATABASE_URL: url });
    expect(problem).toContain("UNDERSTUDY_DATABASE_URL");
    expect(problem).toContain("postgres://");
    expect(problem).not.toContain(PASSWORD);
  }
  const fromFile = configProblem({ UNDERSTUDY_DATABASE_URL_FILE: "/run/secrets/db" }, () => `mysql://app:${PASSWORD}@db/app\n`);
  expect(fromFile).toContain("UNDERSTUDY_DATABASE_URL_FILE");
  expect(fromFile).not.toContain(PASSWORD);
  expect(configProblem({ UNDERSTUDY_DATABASE_URL: "postgres://a@b/c", UNDERSTUDY_DATABASE_URL_FILE: "/x" })).toContain("set only one");
});

test("the URL read from a file (a Docker secret) is used as is, trimmed", () => {
  const config = loadConfig({ UNDERSTUDY_DATABASE_URL_FILE: "/run/secrets/db" }, () => `postgres://app:${PASSWORD}@db:5432/app\n`);
  expect(config.databaseUrl).toBe(`postgres://app:${PASSWORD}@db:5432/app`);
  expect(config.keyFiles).toContain("/run/secrets/db");
});

test("where the database is, for the banner and messages: host, port, database and user, no password", () => {
  expect(describeDatabaseUrl(`postgres://app:${PASSWORD}@db.internal:6432/understudy`)).toBe("PostgreSQL app@db.internal:6432/understudy");
  expect(describeDatabaseUrl("postgresql://db/understudy")).toBe("PostgreSQL db:5432/understudy");
});

test("a database that does not answer is a start-up error naming where, without the password", async () => {
  const port = freePort();
  let message = "";
  try {
    await openPostgres({ url: `postgres://app:${PASSWORD}@127.0.0.1:${port}/understudy`, poolSize: 1 });
  } catch (error) {
    message = (error as Error).message;
  }
  expect(message).toContain(`Cannot connect to PostgreSQL app@127.0.0.1:${port}/understudy`);
  expect(message).toContain("ECONNREFUSED");
  expect(message).not.toContain(PASSWORD);
});
