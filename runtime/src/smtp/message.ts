/**
 * The message as received in DATA: checks that refuse malformed input before
 * anything reaches the queue, and the trace and submission headers the server
 * adds. Works on bytes (CRLF), never on decoded text.
 */
import type { MessageEdit, Verdict } from "../filter/types.js";
import { rfc5322Date } from "../queue/dsn.js";
import { MAX_HEADER_BYTES, MAX_HEADER_FIELDS, MAX_TEXT_LINE_BYTES } from "./limits.js";
import { reply, type SmtpReplyError } from "./replies.js";

const CR = 0x0d;
const LF = 0x0a;

/** End of the header section (index of the CRLF CRLF), or -1 when the message is all header. */
export function headerEnd(message: Buffer): number {
  return message.indexOf("\r\n\r\n");
}

/** null when the message may be queued; else the reply that refuses it. */
export function checkMessage(message: Buffer): SmtpReplyError | null {
  if (message.indexOf(0) >= 0) {
    return reply(554, "5.6.0", "Message contains NUL characters (RFC 5322 §2.3)");
  }
  // RFC 5321 §2.3.8: lines end in CRLF only. A bare LF or CR is how "SMTP
  // smuggling" hides a second message inside the first; refuse, never repair.
  let lineStart = 0;
  for (let lf = message.indexOf(LF); lf >= 0; lf = message.indexOf(LF, lf + 1)) {
    if (lf === 0 || message[lf - 1] !== CR)
      return reply(554, "5.6.0", "Bare LF in message (RFC 5321 §2.3.8)");
    if (lf + 1 - lineStart > MAX_TEXT_LINE_BYTES) {
      return reply(554, "5.6.0", `Line longer than ${MAX_TEXT_LINE_BYTES} octets (RFC 5321 §4.5.3.1.6)`);
    }
    lineStart = lf + 1;
  }
  if (message.length - lineStart > MAX_TEXT_LINE_BYTES) {
    return reply(554, "5.6.0", `Line longer than ${MAX_TEXT_LINE_BYTES} octets (RFC 5321 §4.5.3.1.6)`);
  }
  for (let cr = message.indexOf(CR); cr >= 0; cr = message.indexOf(CR, cr + 1)) {
    if (message[cr + 1] !== LF) return reply(554, "5.6.0", "Bare CR in message (RFC 5321 §2.3.8)");
  }
  const end = headerEnd(message);
  const headerBytes = end < 0 ? message.length : end + 2;
  if (headerBytes > MAX_HEADER_BYTES) {
    return reply(552, "5.3.4", `Header section larger than ${MAX_HEADER_BYTES} octets`);
  }
  const header = message.subarray(0, headerBytes).toString("latin1");
  const fields = header.match(/^[^ \t\r\n]/gm)?.length ?? 0;
  if (fields > MAX_HEADER_FIELDS) return reply(552, "5.3.4", `More than ${MAX_HEADER_FIELDS} header fields`);
  return null;
}

export function hasHeader(message: Buffer, name: string): boolean {
  const end = headerEnd(message);
  const header = message.subarray(0, end < 0 ? message.length : end + 2).toString("latin1");
  return new RegExp(`^${name}[ \\t]*:`, "im").test(header);
}

/** Folds nothing: values here are ours and short; strips CR/LF from anything client-given. */
export function headerLine(name: string, value: string): string {
  return `${name}: ${value.replace(/[\r\n]+/g, " ")}\r\n`;
}

export interface TraceInfo {
  helo: string;
  clientHostname?: string;
  clientAddress: string;
  byHost: string;
  /** RFC 3848 with-protocol: ESMTP, ESMTPS, ESMTPA, ESMTPSA, SMTP, UTF8ESMTPS … */
  protocol: string;
  queueId: string;
  /** Named only for a single recipient (RFC 5321 §4.4: privacy for the rest). */
  forRecipient?: string;
  tls?: string;
  date: Date;
}

/** The trace header, RFC 5321 §4.4 Time-stamp-line. */
export function receivedHeader(t: TraceInfo): string {
  const client = `${t.clientHostname && t.clientHostname !== t.clientAddress ? `${t.clientHostname} ` : ""}[${t.clientAddress.replace(/^::ffff:/i, "")}]`;
  const clean = (v: string) => v.replace(/[\r\n\t]+/g, " ");
  const parts = [
    `from ${clean(t.helo || "unknown")} (${clean(client)})`,
    `by ${t.byHost} (mailinfra)${t.tls ? ` (${clean(t.tls)})` : ""}`,
    `with ${t.protocol} id ${t.queueId}`,
    ...(t.forRecipient ? [`for <${clean(t.forRecipient)}>`] : []),
  ];
  return `Received: ${parts.join("\r\n\t")};\r\n\t${rfc5322Date(t.date)}\r\n`;
}

/** RFC 3848 §1 with-protocol names. */
export function withProtocol(options: {
  esmtp: boolean;
  tls: boolean;
  auth: boolean;
  utf8: boolean;
}): string {
  if (!options.esmtp) return "SMTP";
  return `${options.utf8 ? "UTF8" : ""}ESMTP${options.tls ? "S" : ""}${options.auth ? "A" : ""}`;
}

/** Headers a submission must carry (RFC 6409 §8.2–8.3): added when the client left them out. */
export function submissionHeaders(message: Buffer, queueId: string, hostname: string, now: Date): string {
  let out = "";
  if (!hasHeader(message, "Date")) out += headerLine("Date", rfc5322Date(now));
  if (!hasHeader(message, "Message-ID")) out += headerLine("Message-ID", `<${queueId}@${hostname}>`);
  return out;
}

/** Drops top-level header fields (with their folded lines) whose lower-case names are listed. */
export function removeHeaders(message: Buffer, names: string[]): Buffer {
  const end = headerEnd(message);
  if (end < 0) return message;
  const drop = new Set(names.map((n) => n.toLowerCase()));
  const header = message.subarray(0, end + 2).toString("latin1");
  const fields = header.split(/\r\n(?![ \t])/).filter((f) => f !== "");
  const kept = fields.filter((f) => !drop.has(f.slice(0, f.indexOf(":")).trim().toLowerCase()));
  return Buffer.concat([
    Buffer.from(kept.map((f) => `${f}\r\n`).join(""), "latin1"),
    message.subarray(end + 2),
  ]);
}

/**
 * A header line from a value that may be folded (filter/verdict.ts folds
 * X-Spam-Status, mailauth folds Authentication-Results): a CRLF followed by
 * a space or tab is a fold (RFC 5322 §2.2.3) and is kept; any other CR or LF
 * would start a new header and becomes a space.
 */
export function foldedHeaderLine(name: string, value: string): string {
  const folds = value.replace(/\r?\n(?=[ \t])/g, "\u0000");
  return `${name}: ${folds.replace(/[\r\n]+/g, " ").replace(/\u0000/g, "\r\n")}\r\n`;
}

/** Applies ascending, non-overlapping edits; overlapping ones are dropped (first wins). */
export function applyEdits(message: Buffer, edits: readonly MessageEdit[]): Buffer {
  if (edits.length === 0) return message;
  const parts: Buffer[] = [];
  let at = 0;
  for (const e of [...edits].sort((a, b) => a.start - b.start)) {
    if (e.start < at || e.end < e.start || e.end > message.length) continue;
    parts.push(message.subarray(at, e.start), Buffer.from(e.text));
    at = e.end;
  }
  parts.push(message.subarray(at));
  return Buffer.concat(parts);
}

/**
 * The message as queued: `scanned` (our trace header, then the client's
 * message, as the checks saw it) with the verdict's line edits and header
 * removals applied, and its headers inserted right below our Received.
 */
export function assembleMessage(
  trace: string,
  scanned: Buffer,
  verdict: Pick<Verdict, "addHeaders" | "removeHeaders" | "edits">,
): Buffer {
  const edited = applyEdits(scanned, verdict.edits ?? []);
  const kept = verdict.removeHeaders?.length ? removeHeaders(edited, verdict.removeHeaders) : edited;
  const headers = verdict.addHeaders.map(([name, value]) => foldedHeaderLine(name, value)).join("");
  if (headers === "") return kept;
  const traceBytes = Buffer.from(trace);
  const at = kept.subarray(0, traceBytes.length).equals(traceBytes) ? traceBytes.length : 0;
  return Buffer.concat([kept.subarray(0, at), Buffer.from(headers), kept.subarray(at)]);
}
