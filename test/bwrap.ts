import { test } from "bun:test";
import { chooseSandbox } from "../src/runner/sandbox";
import { selfReadablePaths } from "../src/runtime";

let answer: { usable: boolean; reason: string | undefined } | undefined;

/**
 * Whether `serve` gets a bubblewrap sandbox here: the same probe the server
 * runs for UNDERSTUDY_WORKER_SANDBOX=auto (src/runner/sandbox.ts), so a test
 * expects bwrap's confinement exactly when the server it starts has it.
 */
export function bwrapUsable(): { usable: boolean; reason: string | undefined } {
  answer ??= (() => {
    const sandbox = chooseSandbox("auto", { hidden: [], programPaths: selfReadablePaths() });
    return { usable: sandbox.mode === "bwrap", reason: sandbox.reason };
  })();
  return answer;
}

const noticesShown = new Set<string>();

/**
 * For assertions that only bubblewrap makes true (files outside the
 * worker's view, other processes invisible): true when they must run. When
 * bwrap does not work here it prints one visible notice per `what` and
 * answers false, so a host without it still runs the rest; with
 * UNDERSTUDY_TEST_REQUIRE_BWRAP=1 (CI) it throws instead, failing the test,
 * so a CI image without working bwrap cannot silently skip them.
 */
export function bwrapAssertionsApply(what: string): boolean {
  const { usable, reason } = bwrapUsable();
  if (usable) return true;
  if (process.env.UNDERSTUDY_TEST_REQUIRE_BWRAP === "1") {
    throw new Error(`bubblewrap is not usable here (${reason}), and UNDERSTUDY_TEST_REQUIRE_BWRAP=1 requires it: apt-get install bubblewrap, with user namespaces allowed.`);
  }
  if (!noticesShown.has(what)) {
    noticesShown.add(what);
    console.warn(`SKIPPED bubblewrap assertions (${what}): ${reason}`);
  }
  return false;
}

/** A test whose every assertion needs bubblewrap: run, skipped with a notice, or failed under UNDERSTUDY_TEST_REQUIRE_BWRAP=1 (see bwrapAssertionsApply). */
export function testWithBwrap(name: string, fn: () => Promise<void>, timeoutMs: number): void {
  const { usable } = bwrapUsable();
  if (usable || process.env.UNDERSTUDY_TEST_REQUIRE_BWRAP === "1") {
    test(name, async () => {
      bwrapAssertionsApply(name);
      await fn();
    }, timeoutMs);
    return;
  }
  bwrapAssertionsApply(name);
  test.skip(name, fn, timeoutMs);
}
