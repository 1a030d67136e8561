/**
 * Named limits of the POP3 server, each with a test (test/pop3/limits.test.ts).
 * The configurable ones come from runtime.yaml `pop3.limits`.
 */
export interface Pop3Limits {
  /** A command line longer than this (without CRLF) ends the session. RFC 2449 §4: commands fit in 255 octets. */
  maxLineBytes: number;
  /** Unknown, malformed or out-of-state commands in a row before the session is closed. */
  maxBadCommands: number;
  /** RFC 1939 §3: the autologout timer, at least 10 minutes in production. */
  idleTimeoutMs: number;
  /** Concurrent connections from one client address. */
  maxConnectionsPerIp: number;
  /**
   * Sessions per login name (this process), counted from the moment its
   * credentials are checked until the session ends (a failed login gives its
   * slot back). The maildrop lock already allows one TRANSACTION session; this
   * bounds the directory binds a storm of parallel logins to one account costs.
   */
  maxConnectionsPerUser: number;
  /** Failed logins from one client address before every further auth reply is delayed. */
  authFailuresBeforeDelay: number;
  /** The delay applied once `authFailuresBeforeDelay` is reached. */
  authFailureDelayMs: number;
}

export const AUTH_FAILURE_DELAY_MS = 2_000;
/** How long a client address's failed logins are remembered. */
export const AUTH_FAILURE_WINDOW_MS = 15 * 60_000;
/** RFC 1939 §3: arguments are at most 40 characters (PASS excepted: passwords may be longer). */
export const MAX_ARG_CHARS = 40;
/** TLS handshake must finish within this (STLS and implicit TLS). */
export const TLS_HANDSHAKE_TIMEOUT_MS = 30_000;

export function limitsFromConfig(
  c: {
    maxLineBytes: number;
    maxBadCommands: number;
    idleTimeoutSeconds: number;
    maxConnectionsPerIp: number;
    maxConnectionsPerUser: number;
    authFailuresBeforeDelay: number;
  },
  authFailureDelayMs = AUTH_FAILURE_DELAY_MS,
): Pop3Limits {
  return {
    maxLineBytes: c.maxLineBytes,
    maxBadCommands: c.maxBadCommands,
    idleTimeoutMs: c.idleTimeoutSeconds * 1000,
    maxConnectionsPerIp: c.maxConnectionsPerIp,
    maxConnectionsPerUser: c.maxConnectionsPerUser,
    authFailuresBeforeDelay: c.authFailuresBeforeDelay,
    authFailureDelayMs,
  };
}
