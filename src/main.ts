#!/usr/bin/env bun
/**
 * The composition root: the only place with process side effects (reading
 * the environment, writing to the terminal, signals, exit codes).
 */
import { runCli } from "./cli/commands";
import type { Io } from "./cli/io";
import { takeEnvironment } from "./config";

const env = takeEnvironment(process.env);

const io: Io = {
  env,
  cwd: process.cwd(),
  out: (text) => void process.stdout.write(text),
  err: (text) => void process.stderr.write(text),
  stopSignal: () =>
    new Promise((resolve) => {
      for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => resolve(signal));
    }),
};

let code: number;
try {
  code = await runCli(process.argv.slice(2), io);
} catch (error) {
  // A bug: say so without a stack that might quote data.
  process.stderr.write(`understudy: unexpected error: ${error instanceof Error ? `${error.name}: ${error.message}` : "unknown"}\n`);
  code = 1;
}
// Exit explicitly: a workflow handler left behind after its run ended (it
// ignored its abort signal) must not keep the process alive.
process.exit(code);
