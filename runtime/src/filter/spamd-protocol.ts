/**
 * The SPAMC/1.5 protocol spoken to SpamAssassin's spamd (wire layer only;
 * see spamd(1p) "PROTOCOL" and spamc's libspamc.c):
 *
 *   C: SYMBOLS SPAMC/1.5\r\n
 *   C: Content-length: <bytes>\r\n
 *   C: \r\n
 *   C: <message>                        (then the client half-closes)
 *   S: SPAMD/1.1 0 EX_OK\r\n
 *   S: Content-length: <n>\r\n
 *   S: Spam: True ; 1000.0 / 5.0\r\n
 *   S: \r\n
 *   S: GTUBE,MISSING_DATE,…             (SYMBOLS: rule names; REPORT: the report)
 *
 * A non-zero status ("SPAMD/1.0 76 Bad header line") is an error.
 */
import { type DaemonTarget, daemonExchange } from "./daemon-exchange.js";

export type SpamcCommand = "CHECK" | "SYMBOLS" | "REPORT";

export interface SpamdReply {
  isSpam: boolean;
  score: number;
  threshold: number;
  /** SYMBOLS: the rules that hit. */
  symbols: string[];
  /** REPORT: the report text. */
  report?: string;
}

export class SpamdError extends Error {
  override name = "SpamdError";
}

export function spamcRequest(command: SpamcCommand, message: Buffer): Buffer {
  return Buffer.concat([
    Buffer.from(`${command} SPAMC/1.5\r\nContent-length: ${message.length}\r\n\r\n`, "latin1"),
    message,
  ]);
}

/** Parses a whole spamd response. */
export function parseSpamdResponse(raw: Buffer, command: SpamcCommand): SpamdReply {
  if (raw.length === 0) throw new SpamdError("spamd: connection closed without a reply");
  const text = raw.toString("utf8");
  const headEnd = text.indexOf("\r\n\r\n");
  const head = headEnd < 0 ? text : text.slice(0, headEnd);
  const body = headEnd < 0 ? "" : text.slice(headEnd + 4);
  const [status = "", ...lines] = head.split("\r\n");
  const st = /^SPAMD\/(\d+\.\d+) (\d+) (.*)$/.exec(status);
  if (!st) throw new SpamdError(`spamd: unexpected response line "${status.slice(0, 80)}"`);
  if (st[2] !== "0") throw new SpamdError(`spamd: ${st[2]} ${st[3]}`);
  let spam: RegExpExecArray | null = null;
  for (const l of lines) {
    spam ??= /^Spam:\s*(True|False|Yes|No)\s*;\s*(-?[\d.]+)\s*\/\s*(-?[\d.]+)\s*$/i.exec(l);
  }
  if (!spam) throw new SpamdError("spamd: response without a Spam header");
  const reply: SpamdReply = {
    isSpam: /^(true|yes)$/i.test(spam[1]!),
    score: Number(spam[2]),
    threshold: Number(spam[3]),
    symbols: [],
  };
  if (command === "SYMBOLS") {
    reply.symbols = body
      .trim()
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s !== "");
  } else if (command === "REPORT") {
    reply.report = body;
  }
  return reply;
}

export function spamdScan(
  target: DaemonTarget,
  message: Buffer,
  command: SpamcCommand = "SYMBOLS",
): Promise<SpamdReply> {
  return daemonExchange(target, {
    error: (text) => new SpamdError(`spamd: ${text}`),
    send: (socket) => socket.end(spamcRequest(command, message)),
    reply: (raw) => parseSpamdResponse(raw, command),
  });
}
