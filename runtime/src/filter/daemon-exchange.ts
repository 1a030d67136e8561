/**
 * One request/response exchange with a scanning daemon over TCP (clamd,
 * spamd): connect, send, collect the reply until the daemon marks its end or
 * closes, all within one timeout. Every failure rejects with the caller's
 * error class, prefixed with the daemon's name; the socket is always destroyed.
 */
import { connect, type Socket } from "node:net";

export interface DaemonTarget {
  host: string;
  port: number;
  timeoutMs: number;
}

export interface Exchange<T> {
  /** Wraps a message ("clamd: …") in the daemon's error class. */
  error(message: string): Error;
  /** Writes the request once connected; `finished()` turns true when the exchange is over. */
  send(socket: Socket, finished: () => boolean): void;
  /** True when this chunk ends the reply (clamd's NUL); otherwise the reply ends at close. */
  complete?(chunk: Buffer): boolean;
  /** Return true to wait for "close" instead of failing (the reply may still arrive). */
  tolerate?(err: NodeJS.ErrnoException, socket: Socket): boolean;
  /** Turns the whole reply into the result; throws for a bad or missing reply. */
  reply(raw: Buffer): T;
}

export function daemonExchange<T>(target: DaemonTarget, x: Exchange<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let done = false;
    const finish = (err: Error | undefined, value?: T): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(value!);
    };
    const settle = (): void => {
      if (done) return;
      try {
        finish(undefined, x.reply(Buffer.concat(chunks)));
      } catch (err) {
        finish(err as Error);
      }
    };
    const socket = connect({ host: target.host, port: target.port });
    const timer = setTimeout(() => finish(x.error(`no answer in ${target.timeoutMs} ms`)), target.timeoutMs);
    socket.on("connect", () => x.send(socket, () => done));
    socket.on("data", (c: Buffer) => {
      chunks.push(c);
      if (x.complete?.(c)) settle();
    });
    socket.on("error", (err: NodeJS.ErrnoException) => {
      if (x.tolerate?.(err, socket)) return;
      finish(x.error(err.code ?? err.message));
    });
    socket.on("close", settle);
  });
}
