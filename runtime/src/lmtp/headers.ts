/**
 * Trace headers added at final delivery: Return-Path (RFC 5321 §4.4: the
 * envelope sender, added by the delivering MTA), Delivered-To (loop detection,
 * as Postfix/Dovecot write it) and a Received line (RFC 5321 §4.4, "with LMTP",
 * RFC 3848).
 */
export interface TraceInput {
  sender: string;
  recipient: string;
  /** The client's LHLO name, its address, our host name and the session id. */
  helo: string;
  remoteAddress: string;
  hostname: string;
  id: string;
  date?: Date;
}

const clean = (s: string) => s.replace(/[\r\n\u0000-\u001f\u007f<>]/g, "");

export function traceHeaders(t: TraceInput): Buffer {
  const date = (t.date ?? new Date()).toUTCString().replace("GMT", "+0000");
  const lines = [
    `Return-Path: <${clean(t.sender)}>`,
    `Delivered-To: ${clean(t.recipient)}`,
    `Received: from ${clean(t.helo) || "unknown"} ([${clean(t.remoteAddress)}])`,
    `\tby ${clean(t.hostname)} (mailinfra) with LMTP id ${clean(t.id)}`,
    `\tfor <${clean(t.recipient)}>; ${date}`,
  ];
  return Buffer.from(`${lines.join("\r\n")}\r\n`);
}
