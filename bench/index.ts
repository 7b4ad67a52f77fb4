/**
 * `npm run bench`: the single-node benchmarks in turn (HTTP and jobs,
 * browsers, webhooks, schedules). `npm run bench -- --postgres`: on
 * PostgreSQL instead: the HTTP and jobs targets (bench/run.ts --postgres),
 * then several instances beside pg-boss (bench/postgres.ts).
 * Other arguments go to each benchmark.
 */
import { join } from "node:path";

const args = process.argv.slice(2);
const postgres = args.includes("--postgres");
const rest = args.filter((a) => a !== "--postgres");
const scripts = postgres ? [["run.ts", "--postgres"], ["postgres.ts"]] : [["run.ts"], ["browsers.ts"], ["webhooks.ts"], ["schedules.ts"]];
for (const [script, ...own] of scripts) {
  const child = Bun.spawn([process.execPath, join(import.meta.dir, script!), ...own, ...rest], { stdio: ["inherit", "inherit", "inherit"] });
  const code = await child.exited;
  if (code !== 0) process.exit(code);
}
