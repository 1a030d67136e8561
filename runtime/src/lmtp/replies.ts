/**
 * LMTP replies (RFC 2033 §4.2: one per accepted recipient after DATA), with
 * RFC 3463 enhanced codes. Internal error text never reaches the client.
 */
import { StoreError } from "../store/types.js";

export interface Reply {
  code: number;
  /** Starts with the enhanced status code. */
  text: string;
}

export const REPLIES = {
  delivered: { code: 250, text: "2.0.0 Delivered" },
  unknownUser: { code: 550, text: "5.1.1 No such user here" },
  directoryDown: { code: 451, text: "4.4.3 Directory temporarily unavailable, try again later" },
  overQuota: { code: 552, text: "5.2.2 Mailbox is full" },
  storeFault: { code: 451, text: "4.3.0 Temporary failure storing the message, try again later" },
  badMailbox: { code: 550, text: "5.1.1 Mailbox unavailable" },
  /** RFC 5321 §6.3 loop detection (queue/loop.ts). */
  tooManyHops: { code: 554, text: "5.4.6 Too many hops" },
  rejected: (reason: string): Reply => ({ code: 550, text: `5.7.1 ${reason.replace(/[\r\n]+/g, " ")}` }),
} as const satisfies Record<string, Reply | ((r: string) => Reply)>;

/** A delivery failure → the recipient's reply. */
export function replyForError(err: unknown): Reply {
  if (err instanceof StoreError) {
    if (err.code === "OVERQUOTA") return REPLIES.overQuota;
    if (err.code === "BADNAME") return REPLIES.badMailbox;
  }
  return REPLIES.storeFault;
}

/** smtp-server takes Error objects with a responseCode for failures. */
export function replyError(reply: Reply): Error & { responseCode: number } {
  const err = new Error(reply.text) as Error & { responseCode: number };
  err.responseCode = reply.code;
  return err;
}
