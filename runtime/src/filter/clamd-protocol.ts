/**
 * ClamAV clamd's INSTREAM command over TCP (clamd(8) "INSTREAM"), wire layer:
 *
 *   C: zINSTREAM\0
 *   C: <4-byte big-endian length><data>   … repeated
 *   C: \0\0\0\0                            (end of stream)
 *   S: stream: OK\0 | stream: <signature> FOUND\0 | <text> ERROR\0
 *
 * clamd answers "INSTREAM size limit exceeded. ERROR" and closes as soon as
 * the stream passes its StreamMaxLength; the reply is read even when our
 * writes then fail with EPIPE/ECONNRESET.
 */
import { connect, type Socket } from "node:net";
import { type DaemonTarget, daemonExchange } from "./daemon-exchange.js";

/** Bytes per INSTREAM chunk (clamdscan sends 8 KiB; larger chunks mean fewer syscalls). */
export const CHUNK_BYTES = 64 * 1024;

export type ClamdReply =
  | { kind: "clean" }
  | { kind: "infected"; signature: string }
  | { kind: "too-large" }
  | { kind: "error"; text: string };

export class ClamdError extends Error {
  override name = "ClamdError";
}

export function parseClamdReply(text: string): ClamdReply {
  const t = text.replace(/\0+$/, "").trim();
  if (/^stream: OK$/.test(t)) return { kind: "clean" };
  const found = /^stream: (.+) FOUND$/.exec(t);
  if (found) return { kind: "infected", signature: found[1]! };
  if (/size limit exceeded/i.test(t)) return { kind: "too-large" };
  return { kind: "error", text: t.slice(0, 200) };
}

/** The INSTREAM request for a message, as buffers (the message is not copied). */
export function instreamFrames(message: Buffer, chunkBytes = CHUNK_BYTES): Buffer[] {
  const frames: Buffer[] = [Buffer.from("zINSTREAM\0", "latin1")];
  for (let i = 0; i < message.length; i += chunkBytes) {
    const piece = message.subarray(i, Math.min(i + chunkBytes, message.length));
    const len = Buffer.alloc(4);
    len.writeUInt32BE(piece.length, 0);
    frames.push(len, piece);
  }
  frames.push(Buffer.alloc(4));
  return frames;
}

/**
 * Writes the frames one at a time, letting the event loop read between them:
 * when clamd stops the stream (StreamMaxLength) its reply is read before the
 * next write fails — Node destroys a socket on a write error, unread reply
 * included.
 */
async function sendPaced(socket: Socket, frames: Buffer[], stopped: () => boolean): Promise<void> {
  for (const f of frames) {
    if (stopped() || socket.destroyed) return;
    const ok = await new Promise<boolean>((resolve) => socket.write(f, (err) => resolve(!err)));
    if (!ok) return;
    await new Promise((r) => setImmediate(r));
  }
}

/** zPING → PONG: is clamd alive? */
export function clamdPing(target: DaemonTarget): Promise<boolean> {
  return new Promise((resolve) => {
    let got = "";
    const socket = connect({ host: target.host, port: target.port });
    const timer = setTimeout(() => socket.destroy(), target.timeoutMs);
    socket.on("connect", () => socket.write("zPING\0"));
    socket.on("data", (c: Buffer) => {
      got += c.toString("latin1");
      if (got.includes("\0")) socket.destroy();
    });
    socket.on("error", () => {});
    socket.on("close", () => {
      clearTimeout(timer);
      resolve(got.startsWith("PONG"));
    });
  });
}

type Raw = { reply: ClamdReply } | { cutOff: string };

function instream(target: DaemonTarget, message: Buffer): Promise<Raw> {
  let writeError: string | undefined;
  return daemonExchange<Raw>(target, {
    error: (text) => new ClamdError(`clamd: ${text}`),
    send: (socket, finished) => void sendPaced(socket, instreamFrames(message), finished),
    complete: (chunk) => chunk.includes(0),
    tolerate(err, socket) {
      if (socket.connecting || (err.code !== "EPIPE" && err.code !== "ECONNRESET")) return false;
      writeError = err.code; // clamd may have answered and closed; wait for "close"
      return true;
    },
    reply(raw) {
      const text = raw.toString("utf8");
      if (text.trim() !== "") return { reply: parseClamdReply(text) };
      if (writeError) return { cutOff: writeError };
      throw new ClamdError("clamd: connection closed without a reply");
    },
  });
}

/**
 * Scans a message. When clamd cuts the stream off and its reply is lost with
 * the reset connection (Node drops unread data on a write error), a zPING
 * tells the two causes apart: clamd alive → it was StreamMaxLength; dead → an
 * error.
 */
export async function clamdScan(target: DaemonTarget, message: Buffer): Promise<ClamdReply> {
  const raw = await instream(target, message);
  if ("reply" in raw) return raw.reply;
  if (await clamdPing(target)) return { kind: "too-large" };
  throw new ClamdError(`clamd: connection closed while streaming (${raw.cutOff})`);
}
