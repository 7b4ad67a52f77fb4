#!/usr/bin/env bun
/**
 * The composition root: the only place with process side effects (reading
 * the environment, writing to the terminal, signals, exit codes).
 */
import { WORKER_SUBCOMMAND, workerKind } from "./worker/protocol";

let code: number;
if (process.argv[2] === WORKER_SUBCOMMAND) {
  // A worker process (src/worker/main.ts): it loads nothing of the CLI, the
  // server, the store or the vault, so none of that code runs beside tenant code.
  const { runWorker } = await import("./worker/main");
  code = await runWorker(workerKind.parse(process.argv[3]));
} else {
  // Before anything reads a key: see prctl.ts.
  const { hardenServerProcess } = await import("./prctl");
  await hardenServerProcess();
  const { runCli } = await import("./cli/commands");
  const { takeEnvironment } = await import("./config");
  const env = takeEnvironment(process.env);
  try {
    code = await runCli(process.argv.slice(2), {
      env,
      cwd: process.cwd(),
      out: (text) => void process.stdout.write(text),
      err: (text) => void process.stderr.write(text),
      stopSignal: () =>
        new Promise((resolve) => {
          for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => resolve(signal));
        }),
    });
  } catch (error) {
    // A bug: say so without a stack that might quote data.
    process.stderr.write(`understudy: unexpected error: ${error instanceof Error ? `${error.name}: ${error.message}` : "unknown"}\n`);
    code = 1;
  }
}
// Exit explicitly: a workflow handler left behind after its run ended (it
// ignored its abort signal) must not keep the process alive.
process.exit(code);
