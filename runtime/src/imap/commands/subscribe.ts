/** SUBSCRIBE and UNSUBSCRIBE (RFC 3501 §6.3.6, §6.3.7). */
import { mailboxCommand } from "./types.js";

export const subscribe = mailboxCommand((s, mailbox) => s.user!.subscribe(mailbox));
export const unsubscribe = mailboxCommand((s, mailbox) => s.user!.unsubscribe(mailbox));
