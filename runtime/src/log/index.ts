/**
 * pino, JSON lines to stdout for the journal. Written in-process through
 * sonic-boom (pino.destination): no transport worker threads, so the bundle
 * needs no files beside it. One child logger per connection carries
 * `{ cid, proto, remote }`; credentials are redacted wherever they appear in
 * the logged objects (the paths below).
 */
import { randomBytes } from "node:crypto";
import pino, { type DestinationStream, type Logger } from "pino";

export type { Logger } from "pino";

export type LogLevel = "fatal" | "error" | "warn" | "info" | "debug" | "trace";

/** Fields that hold credentials; redacted at the top level and one or two levels down. */
export const REDACTED_FIELDS = [
  "password",
  "pass",
  "passwd",
  "secret",
  "token",
  "authorization",
  "credentials",
  "bindPassword",
] as const;

export const REDACT_PATHS: string[] = REDACTED_FIELDS.flatMap((f) => [f, `*.${f}`, `*.*.${f}`]);

export interface LoggerOptions {
  level?: LogLevel;
  /** Fields on every line, e.g. `{ service: "imap", host: "store1" }`. */
  base?: Record<string, unknown>;
  /** Defaults to stdout (fd 1). */
  destination?: DestinationStream;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  return pino(
    {
      level: options.level ?? "info",
      base: { pid: process.pid, ...options.base },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT_PATHS, censor: "[redacted]" },
      formatters: { level: (label) => ({ level: label }) },
    },
    options.destination ?? pino.destination({ dest: 1, sync: false }),
  );
}

/** A short random connection id, unique enough to follow one session through the journal. */
export function newConnectionId(): string {
  return randomBytes(6).toString("base64url");
}

export interface ConnectionFields {
  cid?: string;
  /** "imap", "pop3", "lmtp", "smtp", … */
  proto: string;
  /** "ip:port" of the peer. */
  remote?: string;
}

/** The per-connection child: every line of one session carries its cid, protocol and peer. */
export function connectionLogger(logger: Logger, fields: ConnectionFields): Logger {
  return logger.child({ cid: fields.cid ?? newConnectionId(), proto: fields.proto, remote: fields.remote });
}

/** Socket errors that mean the peer went away (reset, broken pipe, timeout): routine, not faults. */
const PEER_GONE = new Set([
  "ECONNRESET",
  "EPIPE",
  "ECONNABORTED",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
]);

/**
 * For an SMTP/LMTP server's 'error' event (smtp-server emits a client
 * socket's errors there): a client that went away is logged at debug, with
 * its address; anything else is an error.
 */
export function logServerError(logger: Logger, err: Error & { code?: string }, what: string): void {
  if (err.code !== undefined && PEER_GONE.has(err.code))
    logger.debug({ err }, `${what}: client connection lost`);
  else logger.error({ err }, what);
}
