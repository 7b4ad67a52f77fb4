import { isBun } from "./runtime";

const PR_SET_PDEATHSIG = 1;
const PR_SET_DUMPABLE = 4;
const SIGKILL = 9;

type Prctl = (option: number, arg: number) => void;

/** prctl(2) through bun:ffi; undefined off Linux, off Bun, or without glibc (best effort everywhere). */
async function prctl(): Promise<Prctl | undefined> {
  if (!isBun || process.platform !== "linux") return undefined;
  try {
    const { dlopen, FFIType } = await import("bun:ffi");
    const libc = dlopen("libc.so.6", {
      prctl: { args: [FFIType.i32, FFIType.u64, FFIType.u64, FFIType.u64, FFIType.u64], returns: FFIType.i32 },
    });
    return (option, arg) => void libc.symbols.prctl(option, arg, 0, 0, 0);
  } catch {
    return undefined;
  }
}

/**
 * A worker process:
 * - killed when the server dies, so a handler stuck in a loop (which never
 *   reads the end of its stdin) cannot outlive a crashed server; bubblewrap's
 *   --die-with-parent does the same for a sandboxed worker;
 * - not dumpable, so another process of the same user (another tenant's
 *   worker, without a sandbox) cannot read its memory or its /proc files.
 */
export async function hardenWorkerProcess(): Promise<void> {
  const call = await prctl();
  call?.(PR_SET_PDEATHSIG, SIGKILL);
  call?.(PR_SET_DUMPABLE, 0);
}

/**
 * The server process: not dumpable, so a process of the same (non-root)
 * user, a worker without a sandbox among them, cannot read its memory or
 * /proc/<pid>/environ, where an inline UNDERSTUDY_MASTER_KEY still sits
 * (deleting it from process.env does not change the process's original
 * environment block). Root reads them anyway: that is what bubblewrap's PID
 * namespace is for.
 */
export async function hardenServerProcess(): Promise<void> {
  (await prctl())?.(PR_SET_DUMPABLE, 0);
}
