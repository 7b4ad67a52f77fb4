/**
 * Structured logging: one JSON object per line. Callers pass fields they
 * chose; nothing here serialises a request body, a value or a key.
 */
export type LogLevel = "info" | "warn" | "error";

export interface Logger {
  log(level: LogLevel, msg: string, fields?: Record<string, unknown>): void;
}

export function jsonLogger(write: (line: string) => void, now: () => Date = () => new Date()): Logger {
  return {
    log(level, msg, fields = {}) {
      write(`${JSON.stringify({ time: now().toISOString(), level, msg, ...fields })}\n`);
    },
  };
}

/** A logger that keeps lines in memory, for tests that scan what was logged. */
export function memoryLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  return { lines, ...jsonLogger((line) => lines.push(line)) };
}

export const silentLogger: Logger = { log() {} };
