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
}

export interface ConnectionInfo {
  remoteAddress: string;
  remotePort: number;
  /** Reverse DNS name of the client when known. */
  clientHostname?: string;
  /** Sent anything before the 220 greeting (RFC 5321 §4.3.1 / pipelining abuse). */
  earlyTalker?: boolean;
  authenticatedUser?: string;
  trustedNetwork?: boolean;
}

export interface Envelope {
  helo: string;
  mailFrom: string; // "" for the null sender
  rcptTo: string[];
}

/**
 * One pipeline per SMTP transaction. Stage methods return a verdict that is
 * final early (reject/tempfail) or "accept" to go on; onData returns the
 * message's full verdict, including headers to add.
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
}

export interface FilterPipeline {
  transaction(): FilterTransaction;
  close(): Promise<void>;
}
