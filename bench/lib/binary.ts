import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { BINARY_NAME, buildAll, formatBytes, ROOT } from "../../scripts/build";

/** dist/understudy, rebuilt when missing or older than anything it is built from. */
export async function compiledBinary(binaryArg: string | undefined, rebuild: boolean): Promise<string> {
  if (binaryArg) return binaryArg;
  const binary = join(ROOT, "dist", BINARY_NAME);
  const sources = [join(ROOT, "package.json"), join(ROOT, "scripts", "build.ts"), ...listFiles(join(ROOT, "src"))];
  const newestSource = Math.max(...sources.map((f) => statSync(f).mtimeMs));
  if (!rebuild && existsSync(binary) && statSync(binary).mtimeMs >= newestSource) {
    console.log(`using ${binary} (newer than the sources)`);
    return binary;
  }
  console.log("building dist/understudy ...");
  const built = await buildAll(join(ROOT, "dist"), { targets: ["binary"] });
  console.log(`built ${built.binary!.path} (${formatBytes(built.binary!.bytes)}, ${built.commit})`);
  return built.binary!.path;
}

function listFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => join(entry.parentPath, entry.name));
}

