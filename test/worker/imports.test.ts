import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

/**
 * The worker process runs tenant code beside whatever modules it loaded: it
 * must load nothing that can open the database or the vault. This walks the
 * static and dynamic imports of src/worker/main.ts (and of main.ts's worker
 * branch) through every file of ours they reach.
 */
const SRC = resolve(import.meta.dir, "..", "..", "src");
const FORBIDDEN_FILES = [/^store\//, /^vault\//, /^credentials\//, /^server\//, /^cli\//, /^http\//, /^jobs\//, /^deployments\/(store|service)\.ts$/, /^runner\//];
const FORBIDDEN_PACKAGES = ["bun:sqlite", "better-sqlite3", "kysely", "@noble/ciphers", "hono"];

function scan(file: string) {
  const transpiler = new Bun.Transpiler({ loader: "ts" });
  return transpiler.scanImports(readFileSync(file, "utf8").replace(/^#!.*\n/, ""));
}

/** Static and dynamic imports alike (type-only imports are erased, so not listed). */
const importsOf = (file: string) => scan(file).map((i) => i.path);

function reachable(entry: string): { files: Set<string>; packages: Set<string> } {
  const files = new Set<string>();
  const packages = new Set<string>();
  const queue = [entry];
  while (queue.length > 0) {
    const file = queue.shift()!;
    if (files.has(file)) continue;
    files.add(file);
    for (const specifier of importsOf(file)) {
      if (specifier.startsWith(".")) {
        const target = resolve(dirname(file), specifier);
        queue.push(target.endsWith(".ts") ? target : `${target}.ts`);
      } else packages.add(specifier);
    }
  }
  return { files, packages };
}

test("the worker imports nothing that can reach the store or the vault", () => {
  const { files, packages } = reachable(join(SRC, "worker", "main.ts"));
  const ours = [...files].map((f) => relative(SRC, f));
  expect(ours).toContain("worker/protocol.ts");
  expect(ours).toContain("browser/warm.ts");
  expect(ours.filter((f) => FORBIDDEN_FILES.some((pattern) => pattern.test(f)))).toEqual([]);
  expect([...packages].filter((p) => FORBIDDEN_PACKAGES.includes(p))).toEqual([]);
});

test("main.ts reaches the worker before (and without) the CLI: the worker branch imports only worker modules", () => {
  const source = readFileSync(join(SRC, "main.ts"), "utf8");
  const workerBranch = source.slice(source.indexOf("if (process.argv[2] === WORKER_SUBCOMMAND)"), source.indexOf("} else {"));
  expect(workerBranch).toContain('import("./worker/main")');
  expect(workerBranch).not.toMatch(/import\("\.\/(cli|server|store|vault|config)/);
  // The only static import of main.ts is the protocol (zod and nothing of ours beyond it).
  const staticImports = scan(join(SRC, "main.ts"))
    .filter((i) => i.kind === "import-statement")
    .map((i) => i.path);
  expect(staticImports).toEqual(["./worker/protocol"]);
});
