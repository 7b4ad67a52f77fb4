import type { CdpConnection, CdpConnectionHandlers } from "./cdp-pipe";

export type Connect = (handlers: CdpConnectionHandlers) => CdpConnection;

export interface CdpEvent {
  method: string;
  params: any;
  sessionId?: string;
}

/** The server's own DevTools client on a session's browser: commands as promises, events to listeners. */
export class CdpCaller {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (value: any) => void; reject: (error: Error) => void }>();
  private readonly listeners = new Set<(event: CdpEvent) => void>();
  private readonly connection: CdpConnection;
  private closed = false;

  constructor(connect: Connect) {
    this.connection = connect({
      message: (text) => {
        const message = JSON.parse(text) as { id?: number; result?: unknown; error?: { message?: string }; method?: string; params?: unknown; sessionId?: string };
        if (message.id === undefined) {
          if (message.method) for (const listener of this.listeners) listener(message as CdpEvent);
          return;
        }
        const waiter = this.pending.get(message.id);
        if (!waiter) return;
        this.pending.delete(message.id);
        if (message.error) waiter.reject(new Error(message.error.message ?? "CDP error"));
        else waiter.resolve(message.result);
      },
      closed: () => this.close("The browser's DevTools pipe closed."),
    });
  }

  call<T = any>(method: string, params: object = {}, sessionId?: string): Promise<T> {
    if (this.closed) return Promise.reject(new Error("The DevTools connection is closed."));
    return new Promise<T>((resolve, reject) => {
      const id = this.nextId++;
      this.pending.set(id, { resolve, reject });
      this.connection.send(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }));
    });
  }

  on(listener: (event: CdpEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Fails what is still waiting and detaches; idempotent. */
  close(why = "The DevTools connection was closed."): void {
    if (this.closed) return;
    this.closed = true;
    for (const waiter of this.pending.values()) waiter.reject(new Error(why));
    this.pending.clear();
    this.listeners.clear();
    this.connection.close();
  }
}

/** Settles with the work's value, or undefined once timeoutMs has passed. */
export async function within<T>(timeoutMs: number, work: Promise<T>): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([work, new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), timeoutMs)))]);
  } finally {
    clearTimeout(timer);
  }
}
