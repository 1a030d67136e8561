/**
 * smtp-server with our own connection stage in front. smtp-server holds every
 * greeting back a fixed 100 ms and answers a client that talks meanwhile with
 * its own "421 You talk too soon", outside our pipeline. Here a `gate` runs
 * first on the accepted socket (the pause before the greeting, reverse DNS,
 * the filter's connection checks, a refusal written by us); only an admitted
 * socket becomes an SMTPConnection, made ready at once, so no client byte can
 * reach its parser before the 220 (its `connectionReady()` runs in the same
 * tick as the pipe to the parser, and our onConnect answers synchronously).
 *
 * This leans on SMTPConnection's declared members (`_setListeners`,
 * `connectionReady`) of the exactly pinned smtp-server; the tests in
 * runtime/test/smtp/greeting.test.ts pin the behaviour.
 */
import type { Socket } from "node:net";
import { SMTPServer, type SMTPServerOptions } from "smtp-server";
import { SMTPConnection, type SMTPConnectionOptions } from "smtp-server/lib/smtp-connection.js";

/** Resolves true when the socket may have its SMTP session; false when the gate has dealt with it. */
export type Gate = (socket: Socket, id: string) => Promise<boolean>;

let nextId = 0;

/** smtp.maxConnections reached (per process here, per host in server.ts's gate): RFC 3463 X.3.2. */
export const TOO_MANY_CLIENTS = "421 4.3.2 Too many connected clients, try again in a moment";

/**
 * Answers a socket that gets no session with one reply line and closes it:
 * what the client says meanwhile is read and dropped; a client that does not
 * close its side is cut off after `lingerMs`.
 */
export function refuseSocket(socket: Socket, line: string, lingerMs: number): void {
  socket.resume();
  socket.end(`${line}\r\n`);
  setTimeout(() => socket.destroy(), lingerMs).unref();
}

export class GatedSMTPServer extends SMTPServer {
  private readonly gated = new Set<Socket>();

  constructor(
    options: SMTPServerOptions,
    private readonly gate: Gate,
  ) {
    super(options);
  }

  /** Sockets in the gate (not yet SMTP sessions), for the drain and maxClients. */
  get gatedCount(): number {
    return this.gated.size;
  }

  override connect(socket: Socket, socketOptions?: SMTPConnectionOptions | null): void {
    const options: SMTPConnectionOptions = { ...(socketOptions ?? {}) };
    options.id ??= `g${Date.now().toString(36)}${(nextId++).toString(36)}`;
    const id = options.id;
    const ignoreErrors = () => undefined;
    socket.on("error", ignoreErrors);
    const max = this.options.maxClients;
    if (max && this.connections.size + this.gated.size >= max) {
      refuseSocket(socket, TOO_MANY_CLIENTS, 1000);
      return;
    }
    this.gated.add(socket);
    this.gate(socket, id).then(
      (admit) => {
        this.gated.delete(socket);
        socket.removeListener("error", ignoreErrors);
        if (!admit || socket.destroyed || this._closeTimeout) {
          if (!socket.destroyed) socket.destroy();
          return;
        }
        this.open(socket, options);
      },
      (err: unknown) => {
        this.gated.delete(socket);
        socket.destroy();
        this.emit("error", err);
      },
    );
  }

  /** SMTPServer.connect() + SMTPConnection.init(), minus init()'s fixed 100 ms delay. */
  private open(socket: Socket, options: SMTPConnectionOptions): void {
    const connection = new SMTPConnection(this, socket, options);
    this.connections.add(connection);
    connection.on("error", (err: Error) => this.emit("error", err));
    connection.on("connect", (data: unknown) => this.emit("connect", data));
    connection._setListeners(() => connection.connectionReady());
  }

  override close(callback?: () => void): void {
    for (const socket of this.gated) socket.destroy();
    this.gated.clear();
    super.close(callback);
  }
}
