/**
 * The queue's on-disk records. A queued message is a pair: the message bytes
 * (`msg/<id>`) and its envelope (`env/<id>.json`), the envelope written last as
 * the commit point. The envelope also carries each recipient's delivery state,
 * rewritten atomically as each destination's transaction ends, so a restart
 * never repeats a recipient that was done.
 */

/** Where a recipient's copy goes. */
export type Route =
  /** LMTP to a store: `host` is the account's mailHost, absent → queue.lmtp.host. */
  | { kind: "lmtp"; host?: string }
  /** SMTP to the MX of the address's domain. */
  | { kind: "smtp" }
  /** Not known at enqueue time (bounces): the router decides at delivery. */
  | { kind: "resolve" };

export type RecipientStatus = "pending" | "delivered" | "failed";

export interface QueuedRecipient {
  /** The address the copy is delivered to (after aliasing/forwarding). */
  address: string;
  /** The address as given in RCPT TO, for the DSN's Original-Recipient. */
  original: string;
  route: Route;
  status: RecipientStatus;
  /** RFC 3461 NOTIFY; absent = FAILURE (and DELAY, which we do not send). */
  notify?: Array<"NEVER" | "SUCCESS" | "FAILURE" | "DELAY">;
  /** RFC 3461 ORCPT, "rfc822;addr". */
  orcpt?: string;
  /** The last reply or error for this recipient, e.g. "550 5.1.1 unknown user". */
  lastReply?: string;
  /** The host that gave lastReply (DSN Remote-MTA). */
  remoteMta?: string;
  /** A DSN about this recipient was queued (or none was due): never send another. */
  dsnDone?: boolean;
}

export interface QueuedEnvelope {
  version: 1;
  id: string;
  /** ms since the epoch. */
  receivedAt: number;
  /** "" is the null sender (bounces): never bounced. */
  mailFrom: string;
  size: number;
  recipients: QueuedRecipient[];
  dsn?: { ret?: "FULL" | "HDRS"; envid?: string };
  /** Who gave it to us, for logs and DSNs. */
  client?: { address: string; helo: string };
  attempts: number;
  /** ms since the epoch. */
  nextAttemptAt: number;
  /** Held by policy (Postfix HOLD): kept, not delivered until `mailinfra queue release`. */
  hold?: boolean;
}

/** What the SMTP side hands to the queue. */
export interface EnqueueRequest {
  id?: string;
  mailFrom: string;
  recipients: Array<Pick<QueuedRecipient, "address" | "original" | "route" | "notify" | "orcpt">>;
  dsn?: QueuedEnvelope["dsn"];
  client?: QueuedEnvelope["client"];
  hold?: boolean;
}

/** Turns an address into its delivery address and route at delivery time (bounces). */
export interface Router {
  /** null: no such local address (permanent). Throws DirectoryUnavailableError: try later. */
  resolve(address: string): Promise<{ address: string; route: Exclude<Route, { kind: "resolve" }> } | null>;
}
