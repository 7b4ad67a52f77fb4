import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FatalError } from "../errors";

/**
 * Worker processes and browsers keep their files in the temporary directory
 * (worker homes, Chromium profiles): a read-only one (`docker run
 * --read-only`) would fail every job, so it fails the start instead, saying
 * how to fix it. Checked by making (and removing) a directory there.
 */
export function requireWritableTempDir(dir: string = tmpdir()): void {
  try {
    rmSync(mkdtempSync(join(dir, "understudy-probe-")), { recursive: true, force: true });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? "not writable";
    throw new FatalError(
      `The temporary directory ${dir} is not writable (${code}): worker processes and browsers keep their files there. ` +
        "With `docker run --read-only`, add `--tmpfs /tmp` (Compose: `tmpfs: [/tmp]`); elsewhere set TMPDIR to a writable directory.",
    );
  }
}
