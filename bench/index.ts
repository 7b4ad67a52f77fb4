/**
 * `npm run bench`: the single-node benchmarks in turn (HTTP and jobs,
 * browsers, webhooks, schedules). `npm run bench -- --postgres`: the
 * PostgreSQL benchmark instead (bench/postgres.ts), beside pg-boss.
 * Other arguments go to each benchmark.
 */
import { join } from "node:path";

const args = process.argv.slice(2);
const postgres = args.includes("--postgres");
const rest = args.filter((a) => a !== "--postgres");
const scripts = postgres ? ["postgres.ts"] : ["run.ts", "browsers.ts", "webhooks.ts", "schedules.ts"];
for (const script of scripts) {
  const child = Bun.spawn([process.execPath, join(import.meta.dir, script), ...rest], { stdio: ["inherit", "inherit", "inherit"] });
  const code = await child.exited;
  if (code !== 0) process.exit(code);
}
