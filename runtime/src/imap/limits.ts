/**
 * Named limits of the IMAP server (runtime.yaml `imap.limits`, `imap.maxLiteralBytes`);
 * each has a test in runtime/test/imap/limits.test.ts.
 */
export interface ImapLimits {
  /** MAX_LINE_BYTES: longest command line outside literals. */
  maxLineBytes: number;
  /** MAX_LITERAL_BYTES: largest literal (and APPENDLIMIT, RFC 7889). */
  maxLiteralBytes: number;
  /** MAX_BAD_COMMANDS: BAD responses in a row before BYE. */
  maxBadCommands: number;
  /** Autologout timer (RFC 3501 §5.4: at least 30 minutes); 0 disables. IDLE is exempt. */
  idleTimeoutMs: number;
  maxConnectionsPerIp: number;
  maxConnectionsPerUser: number;
  /** Failed logins from one address before each further failure is answered slowly. */
  authFailuresBeforeDelay: number;
  authFailureDelayMs: number;
}
