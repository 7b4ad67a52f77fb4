import { isBun } from "../runtime";

const PR_SET_PDEATHSIG = 1;
const PR_SET_DUMPABLE = 4;
const SIGKILL = 9;

/**
 * Linux process settings for a worker, through prctl(2) (bun:ffi; best
 * effort, and nothing elsewhere):
 * - killed when the server dies, so a handler stuck in a loop (which never
 *   reads the end of its stdin) cannot outlive a crashed server; bubblewrap's
 *   --die-with-parent does the same for a sandboxed worker;
 * - not dumpable, so another process of the same user (another tenant's
 *   worker, without a sandbox) cannot read its memory or its /proc files.
 */
export async function hardenWorkerProcess(): Promise<void> {
  if (!isBun || process.platform !== "linux") return;
  try {
    const { dlopen, FFIType } = await import("bun:ffi");
    const libc = dlopen("libc.so.6", {
      prctl: { args: [FFIType.i32, FFIType.u64, FFIType.u64, FFIType.u64, FFIType.u64], returns: FFIType.i32 },
    });
    libc.symbols.prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    libc.symbols.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  } catch {
    // No libc of that name (musl), or no FFI: the stdin end still stops an idle worker.
  }
}
