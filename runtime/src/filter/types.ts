/**
 * The filtering pipeline's contract with the SMTP server (smtp/ calls it,
 * filter/ implements it). Haraka's habit: each check records a result; the
 * verdict is taken at the end from all results and the configured policy.
 * filter/ owns this file; smtp/ may add optional members (`// requested by smtp`).
 */

export type CheckStage = "connect" | "helo" | "mail" | "rcpt" | "data";

export interface CheckResult {
  /** The check's name, the same as its module, config key and test. */
  check: string;
  stage: CheckStage;
  /** "pass": nothing found; "fail": a finding that counts; "error": the check itself failed. */
  outcome: "pass" | "fail" | "error" | "skip";
  /** Weighted score this result adds (DNSBL weight, spamd score …). */
  score?: number;
  /** Human-readable finding, e.g. "listed in zen.example (127.0.0.2)". */
  detail?: string;
  /** When a check decides on its own (virus found, regexp REJECT). */
  action?: "reject" | "tempfail";
  /** Text for the SMTP reply when it decides. */
  reply?: string;
  /** SMTP code and enhanced status for `action` (e.g. 421 "4.7.0"); the verdict's defaults otherwise. */
  code?: number;
  enhanced?: string;
  /** Postfix-style side effects of a map action: DISCARD / HOLD (see Verdict.disposition). */
  disposition?: "discard" | "hold";
  /** Headers a map's PREPEND action asks for. */
  prepend?: Array<[name: string, value: string]>;
  /** Line edits of a map's IGNORE / REPLACE / PREPEND (see Verdict.edits). */
  edits?: MessageEdit[];
  /** A map's REDIRECT / BCC (see Verdict). */
  redirect?: string;
  bcc?: string[];
  /** Milliseconds the check took (for the statistics and the benchmark). */
  ms?: number;
}

export type VerdictAction = "accept" | "tag" | "reject" | "tempfail";

export interface Verdict {
  action: VerdictAction;
  /** SMTP code and enhanced status for reject / tempfail, e.g. 550 "5.7.1". */
  code?: number;
  enhanced?: string;
  message?: string;
  /** Headers to prepend when accepting/tagging (X-Spam-Status, Authentication-Results …). */
  addHeaders: Array<[name: string, value: string]>;
  score: number;
  /** Which rule decided, for the statistics. */
  decidedBy: string;
  results: CheckResult[];
  /**
   * Postfix DISCARD / HOLD from a map: reply 250 as for accept, then drop the
   * message (discard) or keep it in the queue without delivering it (hold).
   * A caller that ignores this delivers the message — nothing is lost.
   */
  disposition?: "discard" | "hold";
  /**
   * Lower-case names of top-level headers to strip before adding `addHeaders`
   * (a sender's own X-Spam-* headers must not reach Sieve). Optional to honour.
   */
  removeHeaders?: string[];
  /**
   * Line edits of header/body checks (IGNORE deletes a line, REPLACE swaps it,
   * PREPEND inserts one before it): byte offsets into the message given to
   * onData, ascending and non-overlapping. Applied before `addHeaders`.
   */
  edits?: MessageEdit[];
  /** REDIRECT user@domain: deliver to this address instead of the recipients (last one wins). */
  redirect?: string;
  /** BCC user@domain: add these recipients. */
  bcc?: string[];
}

/** Replace message bytes [start, end) with `text` (start === end inserts). */
export interface MessageEdit {
  start: number;
  end: number;
  text: string;
}

export interface ConnectionInfo {
  remoteAddress: string;
  remotePort: number;
  /** Reverse DNS name of the client when known. */
  clientHostname?: string;
  /** Sent anything before the 220 greeting (RFC 5321 §4.3.1 / pipelining abuse). */
  earlyTalker?: boolean;
  /** Bytes it sent before the greeting (with earlyTalker). */
  earlyBytes?: number;
  /** How long smtp/ held the greeting back watching for early talk; 0 or absent: not tested. */
  greetWaitMs?: number;
  authenticatedUser?: string;
  trustedNetwork?: boolean;
  /**
   * The client came in on the submission port (587), where AUTH is required
   * before MAIL: connection checks (DNSBL, HELO, rate) are skipped for it.
   */
  submission?: boolean;
  /**
   * The client rate/concurrency verdict of the smtp primary's anvil, when
   * several acceptors share the limits (smtp/anvil.ts): filter/rate.ts then
   * reports it instead of counting in this process. `refused`: why, if over.
   */
  sharedRate?: { refused?: string };
}

export interface Envelope {
  helo: string;
  mailFrom: string; // "" for the null sender
  rcptTo: string[];
}

/**
 * One pipeline per SMTP transaction. Stage methods return a verdict that is
 * final early (reject/tempfail) or "accept" to go on; onData returns the
 * message's full verdict, including headers to add. A rejected RCPT rejects
 * that recipient only.
 *
 * Either a fresh transaction per mail transaction with onConnect/onHelo
 * replayed (the rate check knows a connection by remoteAddress:remotePort and
 * counts it once; DNSBL answers are cached briefly), or one per connection
 * with reset() between messages. Call close() when the connection ends so its
 * concurrency slot is freed at once (otherwise it expires after the idle time).
 */
export interface FilterTransaction {
  onConnect(conn: ConnectionInfo): Promise<Verdict>;
  onHelo(helo: string): Promise<Verdict>;
  onMailFrom(address: string): Promise<Verdict>;
  onRcptTo(address: string): Promise<Verdict>;
  /** `message` is the whole message as received (CRLF). */
  onData(message: Buffer, envelope: Envelope): Promise<Verdict>;
  /** The structured record of every verdict, for the log and the statistics. */
  record(): Record<string, unknown>;
  /** The client authenticated (SMTP AUTH): sender checks and spam scoring are skipped. */
  onAuth?(user: string): void;
  /** Start the next mail transaction on the same connection (after RSET / a finished DATA). */
  reset?(): void;
  /** The connection ended: releases its concurrency slot. Idempotent. */
  close?(): void;
}

export interface FilterPipeline {
  transaction(): FilterTransaction;
  close(): Promise<void>;
}
