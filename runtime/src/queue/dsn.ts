/**
 * Delivery status notifications: RFC 3464 multipart/report (RFC 6522) with a
 * human part, the message/delivery-status fields, and the returned message
 * (whole, or only its header when the sender asked RET=HDRS, RFC 3461 §4.3).
 * Pure: builds bytes, the runner queues them.
 */
import { randomBytes } from "node:crypto";
import type { QueuedEnvelope, QueuedRecipient } from "./types.js";

/** RFC 3464 §2.3.3: "relayed" when the next hop took it but the DSN request was not passed on. */
export type DsnAction = "failed" | "delivered" | "relayed";

export interface DsnEntry {
  recipient: QueuedRecipient;
  action: DsnAction;
  /** RFC 3463 status, e.g. "5.1.1". */
  status: string;
}

/** The enhanced status in a reply ("550 5.1.1 …" → "5.1.1"), else one from the class. */
export function statusFromReply(reply: string | undefined, fallback: string): string {
  const match = reply?.match(/\b([245]\.\d{1,3}\.\d{1,3})\b/);
  return match?.[1] ?? fallback;
}

/** RFC 5322 §3.3 date-time. */
export function rfc5322Date(date: Date): string {
  const days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
  const months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${days[date.getUTCDay()]}, ${date.getUTCDate()} ${months[date.getUTCMonth()]} ${date.getUTCFullYear()} ${pad(
    date.getUTCHours(),
  )}:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())} +0000`;
}

function headerSection(message: Buffer): Buffer {
  const end = message.indexOf("\r\n\r\n");
  return end < 0 ? message : message.subarray(0, end + 2);
}

/** Keeps DSN fields single-line and ASCII (RFC 3464 §2.1). */
function field(value: string): string {
  return value.replace(/[\r\n]+/g, " ").replace(/[^\x20-\x7e]/g, "?");
}

export function buildDsn(options: {
  reportingMta: string;
  envelope: QueuedEnvelope;
  entries: DsnEntry[];
  original: Buffer;
  now?: Date;
}): Buffer {
  const { reportingMta, envelope, entries, original } = options;
  const now = options.now ?? new Date();
  const boundary = `=_mailinfra_${randomBytes(12).toString("hex")}`;
  const failed = entries.some((e) => e.action === "failed");
  const lines = (s: string[]) => `${s.join("\r\n")}\r\n`;

  const human = entries.map(
    (e) =>
      `<${e.recipient.original}>: ${e.action === "failed" ? field(e.recipient.lastReply ?? e.status) : "delivered"}`,
  );
  const perMessage = [
    `Reporting-MTA: dns; ${reportingMta}`,
    ...(envelope.dsn?.envid ? [`Original-Envelope-Id: ${field(envelope.dsn.envid)}`] : []),
    `Arrival-Date: ${rfc5322Date(new Date(envelope.receivedAt))}`,
  ];
  const perRecipient = entries.map((e) =>
    [
      "",
      `Final-Recipient: rfc822; ${field(e.recipient.address)}`,
      ...(e.recipient.orcpt ? [`Original-Recipient: ${field(e.recipient.orcpt)}`] : []),
      `Action: ${e.action}`,
      `Status: ${e.status}`,
      ...(e.recipient.remoteMta ? [`Remote-MTA: dns; ${field(e.recipient.remoteMta)}`] : []),
      ...(e.recipient.lastReply ? [`Diagnostic-Code: smtp; ${field(e.recipient.lastReply)}`] : []),
      `Last-Attempt-Date: ${rfc5322Date(now)}`,
    ].join("\r\n"),
  );
  const returnHeadersOnly = envelope.dsn?.ret === "HDRS";
  const returned = returnHeadersOnly ? headerSection(original) : original;

  const head = lines([
    `From: Mail Delivery System <MAILER-DAEMON@${reportingMta}>`,
    `To: <${envelope.mailFrom}>`,
    `Subject: ${failed ? "Undelivered Mail Returned to Sender" : "Successful Mail Delivery Report"}`,
    `Date: ${rfc5322Date(now)}`,
    `Message-ID: <${randomBytes(8).toString("hex")}.dsn@${reportingMta}>`,
    "Auto-Submitted: auto-replied",
    "MIME-Version: 1.0",
    `Content-Type: multipart/report; report-type=delivery-status; boundary="${boundary}"`,
    "",
    "This is a MIME-encapsulated message.",
    "",
    `--${boundary}`,
    "Content-Type: text/plain; charset=us-ascii",
    "",
    `This is the mail system at host ${reportingMta}.`,
    "",
    failed
      ? "Your message could not be delivered to one or more recipients."
      : "Your message was delivered to the following recipients.",
    "",
    ...human,
    "",
    `--${boundary}`,
    "Content-Type: message/delivery-status",
    "",
    ...perMessage,
    ...perRecipient,
    "",
    `--${boundary}`,
    `Content-Type: ${returnHeadersOnly ? "text/rfc822-headers" : "message/rfc822"}`,
    "",
  ]);
  const tail = `\r\n--${boundary}--\r\n`;
  return Buffer.concat([
    Buffer.from(head),
    returned,
    Buffer.from(returned.subarray(-2).toString() === "\r\n" ? tail.slice(2) : tail),
  ]);
}
