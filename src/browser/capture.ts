import { readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { BrowserContext, Locator, Page } from "playwright-core";

/**
 * What a browser job keeps when it ends (README "Job artifacts"): a
 * screenshot of its page (on failure, or always), and a Playwright trace
 * when the job asked for one. Runs where the page lives (the worker, or the
 * server with UNDERSTUDY_WORKFLOW_ISOLATION=none), before the job's context
 * is closed; it never touches the database.
 */
export interface CaptureConfig {
  /** always: a screenshot when the job fails and when it completes; failure: only when it fails; never: none. */
  screenshots: "always" | "failure" | "never";
  /** Record a Playwright trace from the page's opening (jobs/create `trace: true`). */
  trace: boolean;
  /** Values a screenshot must not show: inputs holding one (and every password input) are masked. */
  maskValues: string[];
  /** Largest artifact kept; a larger one is reported by its size only. */
  maxBytes: number;
}

export interface CapturedArtifact {
  kind: "screenshot" | "trace";
  contentType: string;
  /** Undefined when it was over maxBytes (sizeBytes says how large it was). */
  bytes: Uint8Array | undefined;
  sizeBytes: number;
}

/** How long a capture may take before it is given up (a wedged page must not hold the job's end). */
export const CAPTURE_TIMEOUT_MS = 3_000;

/** Mask colour: a solid black box over each masked input. */
export const MASK_COLOR = "#000000";

/** Starts the trace of a job's context, when asked (screenshots and DOM snapshots: what the trace viewer shows). */
export async function startTrace(context: BrowserContext, config: CaptureConfig | undefined): Promise<void> {
  if (!config?.trace) return;
  await context.tracing.start({ screenshots: true, snapshots: true }).catch(() => {});
}

/**
 * The artifacts of a job that ended with `outcome`, taken from its open page.
 * Never throws: what cannot be taken in time is left out.
 */
export async function captureArtifacts(
  context: BrowserContext,
  page: Page | undefined,
  config: CaptureConfig | undefined,
  outcome: "completed" | "failed",
): Promise<CapturedArtifact[]> {
  if (!config) return [];
  const artifacts: CapturedArtifact[] = [];
  // The trace first: it must not record the masking's own page calls.
  if (config.trace) {
    const path = join(tmpdir(), `understudy-trace-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}.zip`);
    const stopped = await withTimeout(
      context.tracing.stop({ path }).then(() => readFile(path)),
      CAPTURE_TIMEOUT_MS * 2,
    );
    await rm(path, { force: true }).catch(() => {});
    if (stopped) artifacts.push(sized("trace", "application/zip", new Uint8Array(stopped), config.maxBytes));
  }
  const wantsScreenshot = config.screenshots === "always" || (config.screenshots === "failure" && outcome === "failed");
  if (wantsScreenshot && page && !page.isClosed()) {
    const shot = await withTimeout(screenshot(page, config.maskValues), CAPTURE_TIMEOUT_MS);
    if (shot) artifacts.unshift(sized("screenshot", "image/png", shot, config.maxBytes));
  }
  return artifacts;
}

function sized(kind: CapturedArtifact["kind"], contentType: string, bytes: Uint8Array, maxBytes: number): CapturedArtifact {
  return { kind, contentType, bytes: bytes.byteLength <= maxBytes ? bytes : undefined, sizeBytes: bytes.byteLength };
}

/**
 * A PNG of the viewport, with every password input and every input or
 * textarea whose value is (or holds) one of `maskValues` covered by a solid
 * box. Only the main frame's inputs are looked at.
 */
async function screenshot(page: Page, maskValues: string[]): Promise<Uint8Array> {
  const mask = await maskedInputs(page, maskValues).catch(() => [] as Locator[]);
  const png = await page.screenshot({ type: "png", mask, maskColor: MASK_COLOR, animations: "disabled", caret: "hide", timeout: CAPTURE_TIMEOUT_MS });
  return new Uint8Array(png);
}

export async function maskedInputs(page: Page, maskValues: string[]): Promise<Locator[]> {
  const values = [...new Set(maskValues.filter((v) => v.length > 0))];
  // The page's inputs are read out and compared here: the values never go
  // into the page, where its own scripts could watch a comparison made there.
  // Written as a string so no DOM types are needed in this file.
  const inputs = (await page.evaluate(
    `[...document.querySelectorAll("input, textarea")].map((input) => [
      String(input.type || ""),
      typeof input.value === "string" ? input.value.slice(0, 65536) : "",
    ])`,
  )) as [string, string][];
  const indices: number[] = [];
  inputs.forEach(([type, value], index) => {
    const holdsSecret = typeof value === "string" && value !== "" && values.some((v) => value === v || (v.length >= 4 && value.includes(v)));
    if (type === "password" || holdsSecret) indices.push(index);
  });
  return indices.map((i) => page.locator("input, textarea").nth(i));
}

async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([promise.catch(() => undefined), new Promise<undefined>((resolve) => (timer = setTimeout(resolve, ms, undefined)))]);
  } finally {
    clearTimeout(timer);
  }
}
