/**
 * Client connection rate and concurrency per IP address (Postfix anvil's
 * smtpd_client_connection_rate_limit / _count_limit): over either limit the
 * connection gets 421 4.7.0 and the client retries later (RFC 5321 §3.8).
 * Trusted networks are exempt, as in Postfix. State lives in memory, per
 * process. A connection is known by address and port, so a caller that
 * replays onConnect for each mail transaction counts it once. Its slot is
 * freed by release() (FilterTransaction.close) or, if that is never called,
 * after `slotTtlMs` (the SMTP idle timeout). The rate window is a sliding 60 s
 * log capped at the limit, so memory is bounded by clients × limit; idle
 * entries are swept.
 */
import { isTrusted, result, type Session } from "./context.js";
import type { CheckResult } from "./types.js";

export const CHECK = "rate";
export const RATE_WINDOW_MS = 60_000;
/** A slot not refreshed or released for this long is dropped (smtp limits.idleTimeoutSeconds default). */
export const DEFAULT_SLOT_TTL_MS = 1_800_000;
/** Sweep idle entries every this many admissions. */
const SWEEP_EVERY = 1024;

interface Entry {
  /** Connection start times in the window, oldest first. */
  starts: number[];
  /** Live connections: remote port → last time seen. */
  live: Map<number, number>;
}

/** Normalises ::ffff:a.b.c.d to a.b.c.d so one client has one entry. */
export function clientKey(ip: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  return m ? m[1]! : ip.toLowerCase();
}

export class RateLimiter {
  private readonly entries = new Map<string, Entry>();
  private admissions = 0;

  constructor(
    private readonly limits: { maxConnectionsPerMinute: number; maxConcurrent: number },
    private readonly now: () => number = Date.now,
    private readonly slotTtlMs = DEFAULT_SLOT_TTL_MS,
  ) {}

  /** Counts a new connection; returns the check's result and whether it holds a slot to release. */
  admit(session: Session): { result: CheckResult; slot: boolean } {
    const conn = session.conn;
    if (conn === undefined || isTrusted(session)) {
      return { result: result(CHECK, "connect", "skip", { detail: "trusted client" }), slot: false };
    }
    // Counted already by the shared anvil (smtp/anvil.ts, several acceptors): its verdict stands.
    if (conn.sharedRate !== undefined) {
      const refused = conn.sharedRate.refused;
      return { result: refused ? this.refuse(refused) : result(CHECK, "connect", "pass"), slot: false };
    }
    return this.admitAddress(conn.remoteAddress, conn.remotePort);
  }

  /** admit() for a bare address and port (the anvil in the smtp primary). */
  admitAddress(remoteAddress: string, remotePort: number): { result: CheckResult; slot: boolean } {
    const conn = { remoteAddress, remotePort };
    const t = this.now();
    if (++this.admissions % SWEEP_EVERY === 0) this.sweep(t);
    const key = clientKey(conn.remoteAddress);
    let e = this.entries.get(key);
    if (!e) {
      e = { starts: [], live: new Map() };
      this.entries.set(key, e);
    }
    if (e.live.has(conn.remotePort)) {
      e.live.set(conn.remotePort, t); // the same connection again (onConnect replayed)
      return { result: result(CHECK, "connect", "pass"), slot: true };
    }
    while (e.starts.length > 0 && e.starts[0]! <= t - RATE_WINDOW_MS) e.starts.shift();
    for (const [port, seen] of e.live) if (seen <= t - this.slotTtlMs) e.live.delete(port);
    const { maxConnectionsPerMinute: rate, maxConcurrent: conc } = this.limits;
    if (rate > 0 && e.starts.length >= rate) {
      return { result: this.refuse(`${e.starts.length} connections in 60 s (limit ${rate})`), slot: false };
    }
    if (conc > 0 && e.live.size >= conc) {
      return { result: this.refuse(`${e.live.size} concurrent connections (limit ${conc})`), slot: false };
    }
    e.starts.push(t);
    e.live.set(conn.remotePort, t);
    return { result: result(CHECK, "connect", "pass"), slot: true };
  }

  release(ip: string, port: number): void {
    this.entries.get(clientKey(ip))?.live.delete(port);
  }

  /** Concurrent connections held by `ip` (tests, metrics). */
  concurrent(ip: string): number {
    return this.entries.get(clientKey(ip))?.live.size ?? 0;
  }

  private refuse(detail: string): CheckResult {
    return result(CHECK, "connect", "fail", {
      detail,
      action: "tempfail",
      code: 421,
      enhanced: "4.7.0",
      reply: "Too many connections from your address, try again later",
    });
  }

  private sweep(t: number): void {
    for (const [k, e] of this.entries) {
      const last = e.starts[e.starts.length - 1];
      if (e.live.size === 0 && (last === undefined || last <= t - RATE_WINDOW_MS)) this.entries.delete(k);
    }
  }
}
