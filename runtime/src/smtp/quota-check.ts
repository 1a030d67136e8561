/**
 * Over-quota at the MX's RCPT (smtp.quotaCheck), the job Dovecot's
 * quota-status policy service does for Postfix: a local recipient's store —
 * the one the queue will deliver to (the account's mailHost, else
 * queue.lmtp.host, queue/runner.ts) — is asked over LMTP whether it would
 * take the recipient (lmtp-probe.ts; the store answers from its quota,
 * lmtp/rcpt-quota.ts). "552 5.2.2" there becomes "552 5.2.2 Mailbox full" to
 * the sending client (RFC 3463 X.2.2, RFC 1870 §6.1), so mail for a full
 * mailbox is refused in the session instead of bounced later to a sender
 * that is mostly forged (backscatter).
 *
 * Fails open: any other answer (4xx; 5xx other than 5.2.2 — existence was
 * decided by the directory), a timeout, a refused connection or a store
 * already known down means "accept as before", and the queue retries or
 * bounces as it always did. Only "full" is cached (cacheSeconds), never "ok".
 */
import { performance } from "node:perf_hooks";
import type { Logger } from "pino";
import { GreetingTimeout, ProbeConnection, type ProbeReply } from "./lmtp-probe.js";

/** Connections per store and process; probes beyond wait for one (within the timeout). */
export const PROBE_CONNECTIONS_PER_DESTINATION = 4;
/** An idle probe connection is closed after this (the store's LMTP drops idle clients after 300 s). */
export const PROBE_IDLE_MS = 30_000;
/** A store that refused the connection or did not answer in time is not probed again for this long. */
export const STORE_DOWN_MS = 10_000;
/** "Full" answers remembered at most (the oldest go first). */
export const FULL_CACHE_MAX = 10_000;

export interface QuotaCheckOptions {
  /** smtp.quotaCheck.timeoutMs: the whole probe (connect, LHLO, MAIL, RCPT). */
  timeoutMs: number;
  /** smtp.quotaCheck.cacheSeconds: how long a "full" answer stands; 0: not cached. */
  cacheSeconds: number;
  /** The store VIP (queue.lmtp.host), for accounts without mailHost. */
  defaultHost: string;
  /** queue.lmtp.port. */
  port: number;
  /** LHLO name: this host's. */
  name: string;
  logger: Logger;
  now?: () => number;
}

export type QuotaAnswer =
  | { full: true; reply: string; cached: boolean; ms: number; host: string }
  | {
      full: false;
      /** ok: the store took the recipient; the rest fail open. */
      reason: "ok" | "refused-other" | "tempfail" | "timeout" | "unreachable" | "store-down" | "closed";
      reply?: string;
      ms: number;
      host: string;
    };

/** A connection from the pool; `reused` when it served an earlier probe (the store may have closed it since). */
interface Lease {
  conn: ProbeConnection;
  reused: boolean;
}

interface Waiter {
  resolve: (lease: Lease) => void;
  reject: (err: Error) => void;
}

interface Destination {
  host: string;
  idle: ProbeConnection[];
  idleTimers: Map<ProbeConnection, NodeJS.Timeout>;
  /** Connections in existence or being opened. */
  count: number;
  waiters: Waiter[];
  downUntil: number;
}

class ProbeTimeout extends Error {}

/** RFC 3463 X.2.2 (mailbox full) at RCPT; a bare 552 at RCPT is over-quota too (RFC 1870 §6.1). */
export function meansFull(r: ProbeReply & { stage: "mail" | "rcpt" }): boolean {
  if (r.stage !== "rcpt" || r.code < 500 || r.code > 599) return false;
  if (/^5\.2\.2(\s|$)/.test(r.text)) return true;
  return r.code === 552 && !/^\d\.\d{1,3}\.\d{1,3}(\s|$)/.test(r.text);
}

export class QuotaCheck {
  private readonly destinations = new Map<string, Destination>();
  /** host + "\n" + address → until when, and the smallest SIZE refused. */
  private readonly full = new Map<string, { until: number; size: number; reply: string }>();
  private readonly now: () => number;
  private closed = false;

  constructor(private readonly options: QuotaCheckOptions) {
    this.now = options.now ?? Date.now;
  }

  /** Would the store take `address` (a local account's final address) for a message of `size` octets? */
  async check(host: string | undefined, address: string, size: number): Promise<QuotaAnswer> {
    const started = performance.now();
    const target = host ?? this.options.defaultHost;
    const ms = () => Math.round((performance.now() - started) * 10) / 10;
    if (this.closed) return { full: false, reason: "closed", ms: 0, host: target };
    const key = `${target.toLowerCase()}\n${address.toLowerCase()}`;
    const known = this.full.get(key);
    if (known && known.until > this.now() && size >= known.size) {
      return { full: true, reply: known.reply, cached: true, ms: ms(), host: target };
    }
    const dest = this.destination(target);
    if (dest.downUntil > this.now()) return { full: false, reason: "store-down", ms: ms(), host: target };

    let conn: ProbeConnection | undefined;
    let timedOut = false;
    let timer: NodeJS.Timeout | undefined;
    const work = (async () => {
      for (let attempt = 0; ; attempt++) {
        const lease = await this.acquire(dest);
        if (timedOut) {
          this.giveBack(dest, lease.conn);
          throw new ProbeTimeout();
        }
        conn = lease.conn;
        try {
          return await lease.conn.probe(address, size);
        } catch (err) {
          if (!lease.reused || attempt > 0 || timedOut) throw err;
          // A kept connection the store closed meanwhile: once more on a new one (as queue/transport.ts).
          conn = undefined;
          this.discard(dest, lease.conn);
        }
      }
    })();
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        timedOut = true;
        reject(new ProbeTimeout());
      }, this.options.timeoutMs);
    });
    try {
      const r = await Promise.race([work, deadline]);
      const reply = `${r.code} ${r.text}`.slice(0, 300);
      if (meansFull(r)) {
        this.remember(key, size, reply);
        return { full: true, reply, cached: false, ms: ms(), host: target };
      }
      const reason = r.code >= 200 && r.code < 300 ? "ok" : r.code < 500 ? "tempfail" : "refused-other";
      return { full: false, reason, reply, ms: ms(), host: target };
    } catch (err) {
      const timeout = err instanceof ProbeTimeout || err instanceof GreetingTimeout;
      dest.downUntil = this.now() + STORE_DOWN_MS;
      this.options.logger.warn(
        {
          store: target,
          reason: timeout ? "timeout" : (err as Error).message,
          heldDownMs: STORE_DOWN_MS,
        },
        "quota probe failed, accepting without it",
      );
      work.catch(() => undefined);
      return { full: false, reason: timeout ? "timeout" : "unreachable", ms: ms(), host: target };
    } finally {
      clearTimeout(timer);
      const c = conn;
      if (c) {
        // A probe cut off by the deadline leaves the session in an unknown state.
        if (timedOut) this.discard(dest, c);
        else this.giveBack(dest, c);
      }
    }
  }

  /** Closes every probe connection; later checks answer "closed" (accept). */
  close(): void {
    this.closed = true;
    for (const dest of this.destinations.values()) {
      for (const w of dest.waiters.splice(0)) w.reject(new Error("quota check closed"));
      for (const conn of dest.idle.splice(0)) this.discard(dest, conn);
    }
  }

  private destination(host: string): Destination {
    let dest = this.destinations.get(host);
    if (!dest) {
      dest = { host, idle: [], idleTimers: new Map(), count: 0, waiters: [], downUntil: 0 };
      this.destinations.set(host, dest);
    }
    return dest;
  }

  private remember(key: string, size: number, reply: string): void {
    if (this.options.cacheSeconds <= 0) return;
    const until = this.now() + this.options.cacheSeconds * 1000;
    const known = this.full.get(key);
    this.full.delete(key);
    // A "full" for SIZE=n holds for any n' ≥ n; the smallest refused size is kept.
    const sizeFloor = known && known.until > this.now() ? Math.min(known.size, size) : size;
    this.full.set(key, { until, size: sizeFloor, reply });
    while (this.full.size > FULL_CACHE_MAX) {
      const oldest = this.full.keys().next().value;
      if (oldest === undefined) break;
      this.full.delete(oldest);
    }
  }

  private acquire(dest: Destination): Promise<Lease> {
    for (let conn = dest.idle.pop(); conn; conn = dest.idle.pop()) {
      clearTimeout(dest.idleTimers.get(conn));
      dest.idleTimers.delete(conn);
      if (!conn.closed) {
        conn.ref();
        return Promise.resolve({ conn, reused: true });
      }
      this.discard(dest, conn);
    }
    if (dest.count < PROBE_CONNECTIONS_PER_DESTINATION) return this.connect(dest);
    return new Promise((resolve, reject) => dest.waiters.push({ resolve, reject }));
  }

  private connect(dest: Destination): Promise<Lease> {
    dest.count += 1;
    const { port, name, timeoutMs } = this.options;
    return ProbeConnection.open(dest.host, port, name, timeoutMs).then(
      (conn) => ({ conn, reused: false }),
      (err: unknown) => {
        dest.count -= 1;
        throw err;
      },
    );
  }

  /** A used connection (its probe's transaction still open, lmtp-probe.ts): to the next waiter or the idle list. */
  private giveBack(dest: Destination, conn: ProbeConnection): void {
    if (conn.closed || this.closed) {
      this.discard(dest, conn);
      return;
    }
    const waiter = dest.waiters.shift();
    if (waiter) {
      waiter.resolve({ conn, reused: true });
      return;
    }
    conn.unref();
    dest.idle.push(conn);
    const idle = setTimeout(() => {
      const at = dest.idle.indexOf(conn);
      if (at >= 0) dest.idle.splice(at, 1);
      dest.idleTimers.delete(conn);
      this.discard(dest, conn);
    }, PROBE_IDLE_MS);
    idle.unref();
    dest.idleTimers.set(conn, idle);
  }

  /** Closes `conn` (once); a waiter, if any, gets a new connection in its place. */
  private discard(dest: Destination, conn: ProbeConnection): void {
    if (discarded.has(conn)) return;
    discarded.add(conn);
    conn.close();
    dest.count -= 1;
    const waiter = dest.waiters.shift();
    if (waiter && !this.closed) this.connect(dest).then(waiter.resolve, waiter.reject);
    else waiter?.reject(new Error("quota check closed"));
  }
}

const discarded = new WeakSet<ProbeConnection>();
