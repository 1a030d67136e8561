/**
 * Delivery workers. Each due message is read from disk, its pending
 * recipients grouped by destination (an LMTP store, or a remote domain's MX),
 * one transaction per destination under a per-destination concurrency limit,
 * and the outcome of every recipient saved durably as soon as its transaction
 * ends — so a crash repeats at most the transaction that was in flight, which
 * is what SMTP allows (RFC 5321 §6.1). 4xx and connection failures are
 * retried with exponential backoff until queue.maxAgeSeconds; permanent
 * failures and expiry produce a DSN (RFC 3464) to the sender, never to the
 * null sender.
 *
 * Remote domains (RFC 5321 §5.1): each MX address in preference order until
 * one answers; a host that answers but takes none of the recipients and
 * defers some (4xx at MAIL, at every RCPT, or after DATA) is treated like
 * one that failed, and the deferred recipients go to the next MX in the same
 * attempt. A 4xx for some recipients while others are accepted stays a
 * deferral. DSN requests (RFC 3461 §4) are passed on to a next hop that
 * advertises DSN, which then reports on them itself.
 */
import type { Resolver } from "node:dns/promises";
import type { Logger } from "pino";
import type { RuntimeConfig } from "../config/schema.js";
import { DirectoryUnavailableError } from "../directory/types.js";
import { buildDsn, type DsnEntry, statusFromReply } from "./dsn.js";
import { createResolver, type MxHost, MxLookupError, resolveMxHosts } from "./mx.js";
import { KeyedSemaphore } from "./semaphore.js";
import type { QueueStore } from "./store.js";
import {
  SessionPool,
  sendTransaction,
  type TransactionDsn,
  type TransactionResult,
  type TransportTarget,
} from "./transport.js";
import type { QueuedEnvelope, QueuedRecipient, Router } from "./types.js";

export type QueueConfig = NonNullable<RuntimeConfig["queue"]>;

/** Messages being delivered at once, over all destinations. */
export const MAX_MESSAGES_IN_FLIGHT = 200;
/**
 * Bytes of just-enqueued messages kept in memory for their first attempt (a
 * backlog beyond this is read back from the queue files when its turn comes).
 */
export const FRESH_MAX_BYTES = 64 * 1024 * 1024;
/** Finished ids remembered against a late notify() from an acceptor process. */
export const RECENTLY_DONE = 10_000;

export interface QueueRunnerOptions {
  store: QueueStore;
  config: QueueConfig;
  /** This host's name: EHLO/LHLO, Reporting-MTA. */
  hostname: string;
  router: Router;
  logger: Logger;
  /** DNS servers for MX lookups (queue.dnsServers ?? filter.dnsServers). */
  dnsServers?: string[];
  now?: () => number;
  /** Called once per recipient and attempt (metrics). */
  onDelivery?: (transport: "lmtp" | "smtp", status: string) => void;
}

/** Delay before attempt `attempts + 1`: initial × 2^(attempts-1), capped. */
export function backoffSeconds(attempts: number, initial: number, max: number): number {
  return Math.min(initial * 2 ** Math.max(0, attempts - 1), max);
}

/** RFC 3461 parameters for a transaction of recipients that share NOTIFY and ORCPT. */
function transactionDsn(env: QueuedEnvelope, r: QueuedRecipient): TransactionDsn | undefined {
  const dsn: TransactionDsn = {
    ...(env.dsn?.ret ? { ret: env.dsn.ret } : {}),
    ...(env.dsn?.envid ? { envid: env.dsn.envid } : {}),
    ...(r.notify?.length ? { notify: r.notify } : {}),
    ...(r.orcpt ? { orcpt: r.orcpt } : {}),
  };
  return Object.keys(dsn).length > 0 ? dsn : undefined;
}

/**
 * Recipients split by their NOTIFY and ORCPT: nodemailer sends one set of RCPT
 * parameters per transaction. Recipients without either share one.
 */
function byDsnParameters(recipients: QueuedRecipient[]): QueuedRecipient[][] {
  const parts = new Map<string, QueuedRecipient[]>();
  for (const r of recipients) {
    const key = `${(r.notify ?? []).join(",")}|${r.orcpt ?? ""}`;
    const part = parts.get(key) ?? [];
    part.push(r);
    parts.set(key, part);
  }
  return [...parts.values()];
}

function domainOf(address: string): string {
  return address.slice(address.lastIndexOf("@") + 1).toLowerCase();
}

interface Group {
  key: string;
  recipients: QueuedRecipient[];
  kind: "lmtp" | "smtp";
  host: string;
}

export class QueueRunner {
  private readonly due = new Map<string, number>();
  private readonly inFlight = new Map<string, Promise<void>>();
  /** Just enqueued, not attempted yet: envelope and bytes as written (no state file exists). */
  private readonly fresh = new Map<string, { envelope: QueuedEnvelope; message: Buffer }>();
  private freshBytes = 0;
  /** Ids finished lately (bounded, oldest dropped): a late notify() for one of them is ignored. */
  private readonly done = new Set<string>();
  private readonly destinations: KeyedSemaphore;
  private readonly sessions = new SessionPool();
  private readonly resolver: Resolver;
  private readonly now: () => number;
  private timer: NodeJS.Timeout | undefined;
  private scanning = false;
  private lastScanAt = 0;
  private stopped = false;

  constructor(private readonly options: QueueRunnerOptions) {
    this.destinations = new KeyedSemaphore(options.config.concurrencyPerDestination);
    this.resolver = createResolver(options.dnsServers);
    this.now = options.now ?? Date.now;
  }

  async start(): Promise<void> {
    const incomplete = await this.options.store.open();
    if (incomplete.length > 0) {
      // Cut short by a crash before their fsync, so never acknowledged: the clients send them again.
      this.options.logger.warn({ queueIds: incomplete }, "removed incomplete queue files left by a crash");
    }
    await this.scan(false);
    this.schedule();
  }

  /**
   * A message was just committed: deliver it now. With `message` (the bytes
   * just written) the first attempt needs no read of the queue file.
   */
  notify(envelope: QueuedEnvelope, message?: Buffer): void {
    // From another process, the news may come after a scan found the file and its
    // delivery finished: the bytes must then not be delivered again.
    if (envelope.hold || this.done.has(envelope.id)) return;
    if (this.due.has(envelope.id) || this.inFlight.has(envelope.id)) message = undefined;
    if (message && this.freshBytes + message.length <= FRESH_MAX_BYTES) {
      // Its own copy: the attempt mutates recipients' state (cheaper than structuredClone per message).
      const copy = { ...envelope, recipients: envelope.recipients.map((r) => ({ ...r })) };
      this.fresh.set(envelope.id, { envelope: copy, message });
      this.freshBytes += message.length;
    }
    this.due.set(envelope.id, envelope.nextAttemptAt);
    this.kick();
  }

  /** Messages known to the runner (queued, not yet done). */
  size(): number {
    return this.due.size;
  }

  /** Stops scheduling and waits for transactions in flight, up to the deadline. */
  async drain(timeoutMs: number): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    let timeout: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled([...this.inFlight.values()]),
      new Promise<void>((resolve) => {
        timeout = setTimeout(resolve, timeoutMs);
      }),
    ]);
    if (timeout) clearTimeout(timeout);
    this.sessions.closeAll();
  }

  /** Rereads the directory (messages added or removed by ops); a flush request makes everything due. */
  private async scan(flushAll: boolean): Promise<void> {
    if (this.scanning) return;
    this.scanning = true;
    this.lastScanAt = this.now();
    try {
      const flush = flushAll || (await this.options.store.takeFlushRequest());
      const ids = new Set(await this.options.store.ids());
      for (const id of this.due.keys()) {
        if (ids.has(id) || this.inFlight.has(id)) continue;
        this.due.delete(id);
        this.takeFresh(id);
      }
      for (const id of ids) {
        if (this.inFlight.has(id)) continue;
        if (this.due.has(id) && !flush) continue;
        const env = await this.options.store.load(id);
        if (!env || env.hold) this.due.delete(id);
        else this.due.set(id, flush ? 0 : env.nextAttemptAt);
      }
      if (flush) this.options.logger.info({ messages: ids.size }, "queue flush");
    } catch (err) {
      this.options.logger.error({ err }, "queue scan failed");
    } finally {
      this.scanning = false;
    }
  }

  private schedule(): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    const scanMs = this.options.config.scanIntervalSeconds * 1000;
    let wait = scanMs;
    const now = this.now();
    for (const [id, at] of this.due) {
      if (this.inFlight.has(id)) continue;
      wait = Math.min(wait, Math.max(0, at - now));
      // Something is due now: no need to look further (this runs after every attempt, the backlog can be long).
      if (wait === 0) break;
    }
    this.timer = setTimeout(() => {
      void (async () => {
        if (this.now() - this.lastScanAt >= scanMs) await this.scan(false);
        this.kick();
        this.schedule();
      })();
    }, wait);
    this.timer.unref();
  }

  private kick(): void {
    if (this.stopped) return;
    const now = this.now();
    for (const [id, at] of this.due) {
      if (this.inFlight.size >= MAX_MESSAGES_IN_FLIGHT) break;
      if (at > now || this.inFlight.has(id)) continue;
      const run = this.attempt(id)
        .catch((err) => {
          this.options.logger.error({ err, queueId: id }, "delivery attempt failed");
          this.due.set(id, this.now() + this.options.config.retryInitialSeconds * 1000);
        })
        .finally(() => {
          this.inFlight.delete(id);
          this.kick();
          this.schedule();
        });
      this.inFlight.set(id, run);
    }
  }

  /** Ops (`queue flush`) and tests: everything due now. */
  async flush(): Promise<void> {
    await this.scan(true);
    this.kick();
  }

  private takeFresh(id: string): { envelope: QueuedEnvelope; message: Buffer } | undefined {
    const fresh = this.fresh.get(id);
    if (fresh) {
      this.fresh.delete(id);
      this.freshBytes -= fresh.message.length;
    }
    return fresh;
  }

  private async attempt(id: string): Promise<void> {
    const { store, config, logger } = this.options;
    const fresh = this.takeFresh(id);
    // A fresh message has no state file yet; ops may have removed it since (checked before the end).
    const loaded = fresh ?? (await store.loadWithMessage(id));
    if (!loaded || loaded.envelope.hold) {
      this.due.delete(id);
      return;
    }
    const { envelope: env, message } = loaded;
    env.attempts += 1;
    const log = logger.child({ queueId: id });

    await this.resolveRoutes(env);
    const groups = this.groupPending(env);
    let saving: Promise<void> = Promise.resolve();
    const persist = () => {
      saving = saving.then(async () => {
        if (await store.exists(id)) await store.save(env);
      });
      return saving;
    };
    let remaining = groups.length;
    await Promise.all(
      groups.map(async (group) => {
        const release = await this.destinations.acquire(group.key);
        try {
          if (group.kind === "lmtp") await this.deliverLmtp(env, group, message);
          else await this.deliverSmtp(env, group, message, log);
        } finally {
          release();
        }
        for (const r of group.recipients) {
          this.options.onDelivery?.(group.kind, r.status);
          log.info(
            {
              rcpt: r.address,
              destination: group.key,
              status: r.status,
              reply: r.lastReply,
              attempt: env.attempts,
            },
            "delivery",
          );
        }
        // Record this destination's outcome before the others finish (a crash then
        // repeats only what was still in flight). The last group's outcome is
        // recorded below, together with the retry time, or the message is removed.
        remaining -= 1;
        if (remaining > 0) await persist();
      }),
    );
    await saving;

    const now = this.now();
    const pending = env.recipients.filter((r) => r.status === "pending");
    if (pending.length > 0 && now - env.receivedAt >= config.maxAgeSeconds * 1000) {
      for (const r of pending) {
        r.status = "failed";
        r.lastReply = `4.4.7 message expired after ${config.maxAgeSeconds} s in the queue; last error: ${r.lastReply ?? "none"}`;
      }
      log.warn({ recipients: pending.length }, "message expired");
    }
    await this.sendDsns(env, message);

    if (env.recipients.some((r) => r.status === "pending")) {
      if (!(await store.exists(id))) {
        this.due.delete(id);
        return;
      }
      env.nextAttemptAt =
        now + backoffSeconds(env.attempts, config.retryInitialSeconds, config.retryMaxSeconds) * 1000;
      await store.save(env);
      this.due.set(id, env.nextAttemptAt);
    } else {
      // remove() is false when ops removed it meanwhile; nothing is left either way.
      // A fresh message that ends in one attempt never had a state file to delete.
      await store.remove(id, { state: !fresh || groups.length > 1 });
      this.due.delete(id);
      this.done.add(id);
      if (this.done.size > RECENTLY_DONE)
        for (const old of this.done) {
          this.done.delete(old);
          break;
        }
      log.info({ attempts: env.attempts }, "message done");
    }
  }

  private async resolveRoutes(env: QueuedEnvelope): Promise<void> {
    for (const r of env.recipients) {
      if (r.status !== "pending" || r.route.kind !== "resolve") continue;
      try {
        const resolved = await this.options.router.resolve(r.address);
        if (resolved) {
          r.address = resolved.address;
          r.route = resolved.route;
        } else {
          r.status = "failed";
          r.lastReply = "550 5.1.1 no such recipient";
        }
      } catch (err) {
        r.lastReply =
          err instanceof DirectoryUnavailableError
            ? "451 4.4.3 directory unavailable"
            : "451 4.3.0 routing failed";
      }
    }
  }

  private groupPending(env: QueuedEnvelope): Group[] {
    const groups = new Map<string, Group>();
    for (const r of env.recipients) {
      if (r.status !== "pending" || r.route.kind === "resolve") continue;
      const [kind, host] =
        r.route.kind === "lmtp"
          ? (["lmtp", r.route.host ?? this.options.config.lmtp.host] as const)
          : (["smtp", domainOf(r.address)] as const);
      const key = `${kind}:${host}`;
      const group = groups.get(key) ?? { key, kind, host, recipients: [] };
      // One copy per address and destination: a repeated address would confuse per-recipient replies.
      if (!group.recipients.some((g) => g.address.toLowerCase() === r.address.toLowerCase()))
        group.recipients.push(r);
      else r.status = "delivered";
      groups.set(key, group);
    }
    return [...groups.values()];
  }

  private target(host: string, port: number, lmtp: boolean, servername?: string): TransportTarget {
    const { config, hostname } = this.options;
    return {
      host,
      port,
      lmtp,
      name: hostname,
      connectTimeoutMs: config.connectTimeoutSeconds * 1000,
      socketTimeoutMs: config.socketTimeoutSeconds * 1000,
      ...(servername ? { servername } : {}),
    };
  }

  /** Records each recipient's outcome; true when the host accepted at least one. */
  private apply(recipients: QueuedRecipient[], result: TransactionResult, remoteMta: string): boolean {
    let accepted = false;
    for (const r of recipients) {
      const outcome = result.outcomes.get(r.address);
      if (!outcome) continue;
      r.lastReply = outcome.reply;
      r.remoteMta = remoteMta;
      if (outcome.klass === 2) {
        r.status = "delivered";
        accepted = true;
        // RFC 3461 §4: the next hop has the DSN request now; a "relayed" report from us would be a second one.
        if (result.dsnRelayed) r.dsnDone = true;
      } else if (outcome.klass === 5) r.status = "failed";
    }
    return accepted;
  }

  private async deliverLmtp(env: QueuedEnvelope, group: Group, message: Buffer): Promise<void> {
    const target = this.target(group.host, this.options.config.lmtp.port, true);
    const result = await sendTransaction(
      target,
      env.mailFrom,
      group.recipients.map((r) => r.address),
      message,
      this.sessions,
    );
    this.apply(group.recipients, result, group.host);
  }

  private async deliverSmtp(env: QueuedEnvelope, group: Group, message: Buffer, log: Logger): Promise<void> {
    let hosts: MxHost[];
    try {
      hosts = await resolveMxHosts(this.resolver, group.host);
    } catch (err) {
      const permanent = err instanceof MxLookupError && err.permanent;
      for (const r of group.recipients) {
        r.lastReply = `${permanent ? 550 : 451} ${(err as Error).message}`;
        if (permanent) r.status = "failed";
      }
      return;
    }
    // Addresses that could not be reached are not tried again for the other transactions.
    const unreachable = new Set<string>();
    for (const part of byDsnParameters(group.recipients)) {
      await this.deliverToMx(env, part, hosts, message, log, unreachable);
    }
  }

  /** One transaction's recipients through the MX list (RFC 5321 §5.1), in preference order. */
  private async deliverToMx(
    env: QueuedEnvelope,
    recipients: QueuedRecipient[],
    hosts: MxHost[],
    message: Buffer,
    log: Logger,
    unreachable: Set<string>,
  ): Promise<void> {
    let pending = recipients;
    let answered = false;
    let lastError = "4.4.1 no mail exchanger reachable";
    const dsn = recipients[0] ? transactionDsn(env, recipients[0]) : undefined;
    for (const [index, mx] of hosts.entries()) {
      if (unreachable.has(mx.address)) continue;
      const result = await sendTransaction(
        this.target(mx.address, this.options.config.remoteSmtpPort, false, mx.name),
        env.mailFrom,
        pending.map((r) => r.address),
        message,
        this.sessions,
        false,
        dsn,
      );
      if (result.tlsFallback) {
        log.warn(
          { mx: mx.name, address: mx.address, reason: result.tlsFallback },
          "STARTTLS handshake failed: retried in plaintext",
        );
      }
      if (!result.connected) {
        unreachable.add(mx.address);
        lastError = result.outcomes.values().next().value?.reply ?? lastError;
        continue;
      }
      answered = true;
      const accepted = this.apply(pending, result, mx.name);
      const deferred = pending.filter((r) => r.status === "pending");
      if (accepted || deferred.length === 0) return;
      if (index < hosts.length - 1) {
        log.info(
          { mx: mx.name, address: mx.address, deferred: deferred.length, reply: deferred[0]?.lastReply },
          "MX deferred the whole transaction: trying the next MX",
        );
      }
      pending = deferred;
    }
    if (!answered) {
      for (const r of recipients) r.lastReply = `451 ${lastError} (all ${hosts.length} MX addresses tried)`;
    }
  }

  /**
   * DSNs for recipients that failed (unless NOTIFY=NEVER or without FAILURE)
   * or were delivered with NOTIFY=SUCCESS (RFC 3461 §4.1). One report per
   * attempt; recipients are marked so a report is never repeated.
   */
  private async sendDsns(env: QueuedEnvelope, message: Buffer): Promise<void> {
    const entries: DsnEntry[] = [];
    for (const r of env.recipients) {
      if (r.dsnDone || r.status === "pending") continue;
      r.dsnDone = true;
      const notify = r.notify ?? ["FAILURE"];
      if (r.status === "failed" && notify.includes("FAILURE")) {
        entries.push({ recipient: r, action: "failed", status: statusFromReply(r.lastReply, "5.0.0") });
      } else if (r.status === "delivered" && notify.includes("SUCCESS")) {
        // Final delivery by LMTP; over SMTP a next hop without DSN got it, but not our DSN request
        // (one with DSN got the request and reports itself: apply() marked those dsnDone).
        entries.push({
          recipient: r,
          action: r.route.kind === "lmtp" ? "delivered" : "relayed",
          status: "2.0.0",
        });
      }
    }
    if (entries.length === 0 || env.mailFrom === "") return;
    const dsn = buildDsn({ reportingMta: this.options.hostname, envelope: env, entries, original: message });
    const queued = await this.options.store.enqueue(
      dsn,
      {
        mailFrom: "",
        recipients: [{ address: env.mailFrom, original: env.mailFrom, route: { kind: "resolve" } }],
      },
      this.now(),
    );
    this.options.logger.info({ queueId: env.id, dsnId: queued.id, recipients: entries.length }, "DSN queued");
    this.notify(queued);
  }
}
