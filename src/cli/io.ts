/** What a command may touch of the process: handed in by main.ts, the only place with process side effects. */
export interface Io {
  readonly env: Record<string, string | undefined>;
  readonly cwd: string;
  out(text: string): void;
  err(text: string): void;
  /** Resolves when the process is asked to stop (SIGINT/SIGTERM). */
  stopSignal(): Promise<string>;
}

export class UsageError extends Error {
  constructor(
    message: string,
    readonly usage: string,
  ) {
    super(message);
    this.name = "UsageError";
  }
}
