/**
 * Mail loop detection by hop count (RFC 5321 §6.3): every MTA adds a
 * Received field (§4.4), so a message that carries more of them than any
 * real path needs is going round in circles — typically a forward that
 * leaves the system and is forwarded back. It is refused at DATA, before
 * anything is queued, on every SMTP role and on LMTP: the sending MTA then
 * bounces it instead of the loop running until the queue's maximum age.
 * Postfix refuses the same way (hopcount_limit, 50: "5.4.6 Too many hops").
 */
import { reply, type SmtpReplyError } from "../smtp/replies.js";

/** Postfix's hopcount_limit; runtime.yaml smtp.hopCountLimit overrides it. */
export const HOP_COUNT_LIMIT = 50;

/** RFC 3463 §3.5: X.4.6 routing loop detected. */
export const TOO_MANY_HOPS = { code: 554, enhanced: "5.4.6", text: "Too many hops" } as const;

/** Received fields in the top-level header section (a forwarded message's own headers do not count). */
export function receivedCount(message: Buffer): number {
  const end = message.indexOf("\r\n\r\n");
  const header = message.subarray(0, end < 0 ? message.length : end + 2).toString("latin1");
  return header.match(/^received[ \t]*:/gim)?.length ?? 0;
}

/** True when the message has passed more than `limit` hops. */
export function tooManyHops(message: Buffer, limit: number = HOP_COUNT_LIMIT): boolean {
  return receivedCount(message) > limit;
}

/** The SMTP reply for a looping message, or null. */
export function checkHops(message: Buffer, limit: number = HOP_COUNT_LIMIT): SmtpReplyError | null {
  return tooManyHops(message, limit)
    ? reply(TOO_MANY_HOPS.code, TOO_MANY_HOPS.enhanced, TOO_MANY_HOPS.text)
    : null;
}
