import type { Readable, Writable } from "node:stream";

/**
 * A session browser's DevTools, over the pipe Chromium opens with
 * --remote-debugging-pipe (it reads commands on fd 3 and writes on fd 4,
 * each message NUL-terminated): no TCP port, so nothing on 127.0.0.1 that a
 * page of any browser on this host could open and read.
 *
 * Chromium has one client on a pipe; several connections (the session's CDP
 * clients and the server's recorder) share it through Chromium's own
 * isolation: each gets a session attached to the browser target
 * (Target.attachToBrowserTarget), which behaves as a separate DevTools client
 * (its own Target.setAutoAttach, its own attached pages). A connection's
 * browser-level commands are sent on its session, and command ids are
 * renumbered on the pipe and given back, so each connection sees the protocol
 * as it would on a WebSocket of its own.
 */
export interface CdpConnection {
  /** Sends one command (JSON text, as a client writes it on a DevTools WebSocket). */
  send(text: string): void;
  /** Detaches the connection; idempotent. */
  close(): void;
}

export interface CdpConnectionHandlers {
  /** A response or event for this connection, as JSON text. */
  message(text: string): void;
  /** The browser's pipe closed (the browser exited). */
  closed(): void;
}

interface Command {
  id?: unknown;
  method?: unknown;
  params?: unknown;
  sessionId?: unknown;
}

interface Reply {
  id?: number;
  method?: string;
  params?: { sessionId?: unknown };
  result?: { sessionId?: unknown };
  error?: { message?: string };
  sessionId?: string;
}

/** A command's sender: a connection and the id it used, or the pipe's own call. */
type Waiter = { connection: Connection; id: unknown } | { resolve(reply: Reply): void };

interface Connection {
  handlers: CdpConnectionHandlers;
  /** Its browser-target session, once attached. */
  browserSessionId: string | undefined;
  /** Commands sent before the browser-target session was attached. */
  queue: string[];
  /** Sessions it attached (pages, workers, more browser sessions): its commands may name these only. */
  sessions: Set<string>;
  closed: boolean;
}

export class CdpPipe {
  private nextId = 1;
  private readonly waiting = new Map<number, Waiter>();
  private readonly owners = new Map<string, Connection>();
  private readonly connections = new Set<Connection>();
  private buffered: Buffer[] = [];
  private ended = false;

  constructor(
    private readonly toBrowser: Writable,
    fromBrowser: Readable,
  ) {
    fromBrowser.on("data", (chunk: Buffer) => this.receive(chunk));
    const end = () => this.end();
    fromBrowser.on("end", end);
    fromBrowser.on("close", end);
    fromBrowser.on("error", end);
    toBrowser.on("error", end);
  }

  /** A command of the server's own, on the pipe's root client; rejects when the browser answers an error or is gone. */
  call(method: string, params: object = {}): Promise<Reply["result"]> {
    if (this.ended) return Promise.reject(new Error("The browser's DevTools pipe is closed."));
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      this.waiting.set(id, {
        resolve: (reply) => (reply.error ? reject(new Error(reply.error.message ?? "CDP error")) : resolve(reply.result)),
      });
      this.write(JSON.stringify({ id, method, params }));
    });
  }

  /** A new connection with a browser-target session of its own. */
  connect(handlers: CdpConnectionHandlers): CdpConnection {
    const connection: Connection = { handlers, browserSessionId: undefined, queue: [], sessions: new Set(), closed: false };
    if (this.ended) {
      queueMicrotask(() => handlers.closed());
      return { send() {}, close() {} };
    }
    this.connections.add(connection);
    this.call("Target.attachToBrowserTarget").then(
      (result) => {
        const sessionId = typeof result?.sessionId === "string" ? result.sessionId : undefined;
        if (!sessionId) throw new Error("no session");
        if (connection.closed) {
          void this.call("Target.detachFromTarget", { sessionId }).catch(() => {});
          return;
        }
        connection.browserSessionId = sessionId;
        this.owners.set(sessionId, connection);
        for (const text of connection.queue) this.forward(connection, text);
        connection.queue = [];
      },
      () => this.drop(connection, true),
    );
    return {
      send: (text) => {
        if (connection.closed) return;
        if (connection.browserSessionId === undefined) connection.queue.push(text);
        else this.forward(connection, text);
      },
      close: () => this.drop(connection, false),
    };
  }

  private forward(connection: Connection, text: string): void {
    let command: Command;
    try {
      command = JSON.parse(text);
    } catch {
      connection.handlers.message(JSON.stringify({ error: { code: -32700, message: "Message must be a valid JSON" } }));
      return;
    }
    if (typeof command !== "object" || command === null || Array.isArray(command)) {
      connection.handlers.message(JSON.stringify({ error: { code: -32600, message: "Message must be an object" } }));
      return;
    }
    let sessionId = connection.browserSessionId;
    if (command.sessionId !== undefined) {
      if (typeof command.sessionId !== "string" || !connection.sessions.has(command.sessionId)) {
        connection.handlers.message(
          JSON.stringify({ id: command.id, sessionId: command.sessionId, error: { code: -32001, message: "Session with given id not found." } }),
        );
        return;
      }
      sessionId = command.sessionId;
    }
    const id = this.nextId++;
    this.waiting.set(id, { connection, id: command.id });
    this.write(JSON.stringify({ ...command, id, sessionId }));
  }

  private receive(chunk: Buffer): void {
    let start = 0;
    for (let end = chunk.indexOf(0); end !== -1; end = chunk.indexOf(0, start)) {
      this.buffered.push(chunk.subarray(start, end));
      const text = Buffer.concat(this.buffered).toString("utf8");
      this.buffered = [];
      start = end + 1;
      this.dispatch(text);
    }
    if (start < chunk.length) this.buffered.push(chunk.subarray(start));
  }

  private dispatch(text: string): void {
    let reply: Reply;
    try {
      reply = JSON.parse(text);
    } catch {
      return;
    }
    if (typeof reply.id === "number") {
      const waiter = this.waiting.get(reply.id);
      if (!waiter) return;
      this.waiting.delete(reply.id);
      if ("resolve" in waiter) {
        waiter.resolve(reply);
        return;
      }
      const { connection } = waiter;
      if (connection.closed) return;
      // Target.attachToTarget and attachToBrowserTarget answer with the session they made.
      const made = reply.result?.sessionId;
      if (typeof made === "string") this.own(connection, made);
      this.deliver(connection, { ...reply, id: waiter.id as number });
      return;
    }
    const connection = reply.sessionId === undefined ? undefined : this.owners.get(reply.sessionId);
    if (!connection || connection.closed) return;
    const child = reply.params?.sessionId;
    if (typeof child === "string") {
      if (reply.method === "Target.attachedToTarget") this.own(connection, child);
      else if (reply.method === "Target.detachedFromTarget") {
        connection.sessions.delete(child);
        if (this.owners.get(child) === connection) this.owners.delete(child);
      }
    }
    this.deliver(connection, reply);
  }

  /** To the connection, with its browser-target session's id taken off (it sent those commands without one). */
  private deliver(connection: Connection, reply: Reply): void {
    if (reply.sessionId === connection.browserSessionId) {
      const { sessionId: _, ...rest } = reply;
      connection.handlers.message(JSON.stringify(rest));
    } else connection.handlers.message(JSON.stringify(reply));
  }

  private own(connection: Connection, sessionId: string): void {
    connection.sessions.add(sessionId);
    this.owners.set(sessionId, connection);
  }

  private drop(connection: Connection, notify: boolean): void {
    if (connection.closed) return;
    connection.closed = true;
    this.connections.delete(connection);
    for (const sessionId of connection.sessions) if (this.owners.get(sessionId) === connection) this.owners.delete(sessionId);
    const browserSessionId = connection.browserSessionId;
    if (browserSessionId !== undefined) {
      this.owners.delete(browserSessionId);
      // Its attached pages detach with it; the pages themselves stay open, as after a WebSocket client leaves.
      if (!this.ended) void this.call("Target.detachFromTarget", { sessionId: browserSessionId }).catch(() => {});
    }
    if (notify) connection.handlers.closed();
  }

  private write(text: string): void {
    if (this.ended) return;
    this.toBrowser.write(`${text}\0`);
  }

  private end(): void {
    if (this.ended) return;
    this.ended = true;
    for (const waiter of this.waiting.values()) if ("resolve" in waiter) waiter.resolve({ error: { message: "The browser's DevTools pipe closed." } });
    this.waiting.clear();
    for (const connection of [...this.connections]) this.drop(connection, true);
  }
}
