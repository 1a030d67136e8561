/**
 * Per-client limits shared by every SMTP acceptor of a host (Postfix's
 * anvil(8)): the client connection rate and concurrency (filter/rate.ts), the
 * AUTH-failure throttle (auth-throttle.ts), the pregreet passes (greeting.ts)
 * and the host's smtp.maxConnections. With smtp.workers > 1 the state lives
 * in the primary (cluster.ts) and acceptors reach it over the cluster IPC
 * channel (cluster/anvil.ts, RemoteAnvil); a single process uses LocalAnvil,
 * where the filter's own RateLimiter keeps counting connections and
 * smtp-server's maxClients caps them, as before.
 *
 * Cost: connect is the one round trip per connection (rate verdict, host
 * count and pregreet pass in one answer); disconnect and pregreet-pass are
 * fire-and-forget; AUTH asks only when a client authenticates.
 *
 * In the primary every connection is counted against smtp.maxConnections
 * (refused at once: `full`, answered 421 4.3.2 by the acceptor's gate before
 * the pregreet pause, like smtp-server's own maxClients); only connections
 * subject to the client limits (not trusted, not submission: `count`) are
 * counted against filter.rate (refused: 421 4.7.0 through the filter's rate
 * stage, which takes the anvil's verdict).
 *
 * The primary not answering within ANVIL_TIMEOUT_MS (busy, restarting):
 *   connect rate   fails OPEN to the acceptor's own count (the filter's
 *   and host count RateLimiter, and smtp-server's maxClients per acceptor):
 *                  refusing every client with 421 because the primary is slow
 *                  would turn a hiccup into an outage; each limit is then at
 *                  most workers × configured.
 *   pregreet pass  "not passed": the client gets the pause (costs it a few
 *                  seconds, lets no early talker through).
 *   AUTH           the acceptor's own throttle, which records every failure
 *                  too: guessing stays throttled per process, users can log in.
 */
import type { Worker } from "node:cluster";
import {
  ANVIL_TIMEOUT_MS,
  type AnvilChannel,
  AnvilClient,
  AnvilServer,
  processChannel,
} from "../cluster/anvil.js";
import type { RuntimeConfig } from "../config/schema.js";
import { RateLimiter } from "../filter/rate.js";
import { AuthThrottle } from "./auth-throttle.js";
import { PregreetCache } from "./greeting.js";

export { ANVIL_TIMEOUT_MS } from "../cluster/anvil.js";

export interface ConnectVerdict {
  /** Set when the anvil counted the connection (then disconnect() frees it); refused: why, if over a limit. */
  rate?: { refused?: string };
  /** The host holds smtp.maxConnections already: why (nothing was counted). */
  full?: string;
  /** The client passed the pregreet test recently: greet it at once. */
  pregreetPassed: boolean;
}

export interface Anvil {
  /** A new connection; `count`: subject to the rate limits (not trusted, not submission). */
  connect(ip: string, port: number, count: boolean): Promise<ConnectVerdict>;
  disconnect(ip: string, port: number): void;
  pregreetPass(ip: string): void;
  authBlocked(ip: string): Promise<boolean>;
  /** Records a failure; resolves to how long to hold the 535 reply. */
  authFail(ip: string): Promise<number>;
}

export interface AnvilLimits {
  authFailuresBeforeDelay: number;
  authFailuresBeforeBlock: number;
  authFailureWindowSeconds: number;
  pregreetPassTtlSeconds: number;
  /** filter.rate; absent: connections are not counted here (the filter counts them in-process). */
  rate?: { maxConnectionsPerMinute: number; maxConcurrent: number };
  /** smtp.maxConnections for the whole host; absent: not counted here (smtp-server's maxClients, per process). */
  maxConnections?: number;
}

/** The limits from runtime.yaml; `shared`: the primary's, which counts connections too. */
export function anvilLimits(config: RuntimeConfig, shared = false): AnvilLimits {
  const smtp = config.smtp;
  return {
    authFailuresBeforeDelay: smtp?.authFailuresBeforeDelay ?? 3,
    authFailuresBeforeBlock: smtp?.authFailuresBeforeBlock ?? 10,
    authFailureWindowSeconds: smtp?.authFailureWindowSeconds ?? 900,
    pregreetPassTtlSeconds: smtp?.greeting.passTtlSeconds ?? 0,
    ...(shared ? { rate: config.filter.rate } : {}),
    ...(shared && smtp ? { maxConnections: smtp.maxConnections } : {}),
  };
}

/** The anvil in one process: the single-process service, and the primary's state (holders: acceptors). */
export class LocalAnvil implements Anvil {
  readonly throttle: AuthThrottle;
  private readonly passed: PregreetCache;
  private readonly rate: RateLimiter | undefined;
  private readonly maxConnections: number | undefined;
  /** The connections counted here ("ip port"), per holder, so a dead acceptor's are freed. */
  private readonly held = new Map<unknown, Map<string, [string, number]>>();
  private connections = 0;

  constructor(limits: AnvilLimits) {
    this.throttle = new AuthThrottle(
      limits.authFailuresBeforeDelay,
      limits.authFailuresBeforeBlock,
      limits.authFailureWindowSeconds * 1000,
    );
    this.passed = new PregreetCache(limits.pregreetPassTtlSeconds * 1000);
    this.rate = limits.rate ? new RateLimiter(limits.rate) : undefined;
    this.maxConnections = limits.maxConnections;
  }

  /** Connections counted against maxConnections now. */
  get connectionCount(): number {
    return this.connections;
  }

  connectNow(ip: string, port: number, count: boolean, holder: unknown = this): ConnectVerdict {
    const pregreetPassed = this.passed.has(ip);
    const rated = count && this.rate !== undefined;
    if (!rated && this.maxConnections === undefined) return { pregreetPassed };
    if (this.maxConnections !== undefined && this.connections >= this.maxConnections) {
      return {
        pregreetPassed,
        full: `${this.connections} connections on this host (smtp.maxConnections ${this.maxConnections})`,
      };
    }
    if (rated) {
      const r = this.rate!.admitAddress(ip, port).result;
      if (r.action) return { pregreetPassed, rate: { refused: r.detail ?? "over the limit" } };
    }
    const mine = this.held.get(holder) ?? new Map<string, [string, number]>();
    this.held.set(holder, mine);
    const key = `${ip} ${port}`;
    if (!mine.has(key)) this.connections += 1;
    mine.set(key, [ip, port]);
    return { pregreetPassed, rate: {} };
  }

  async connect(ip: string, port: number, count: boolean): Promise<ConnectVerdict> {
    return this.connectNow(ip, port, count);
  }

  disconnect(ip: string, port: number, holder: unknown = this): void {
    const mine = this.held.get(holder);
    if (!mine?.delete(`${ip} ${port}`)) return;
    if (mine.size === 0) this.held.delete(holder);
    this.connections -= 1;
    this.rate?.release(ip, port);
  }

  /** Frees every connection of `holder` (an acceptor that exited). */
  releaseHolder(holder: unknown): void {
    for (const [ip, port] of [...(this.held.get(holder)?.values() ?? [])]) this.disconnect(ip, port, holder);
  }

  pregreetPass(ip: string): void {
    this.passed.pass(ip);
  }

  async authBlocked(ip: string): Promise<boolean> {
    return this.throttle.blocked(ip);
  }

  async authFail(ip: string): Promise<number> {
    return this.throttle.fail(ip);
  }
}

/** An acceptor's anvil: asks the primary; on its silence, the fallbacks above. */
export class RemoteAnvil implements Anvil {
  private readonly client: AnvilClient;
  /** The fallback for AUTH (records every failure, so it is current when needed). */
  private readonly own: LocalAnvil;

  constructor(
    limits: Omit<AnvilLimits, "rate" | "maxConnections">,
    timeoutMs = ANVIL_TIMEOUT_MS,
    channel: AnvilChannel = processChannel,
  ) {
    this.client = new AnvilClient(timeoutMs, channel);
    this.own = new LocalAnvil({ ...limits });
  }

  async connect(ip: string, port: number, count: boolean): Promise<ConnectVerdict> {
    const v = (await this.client.ask("connect", [ip, port, count], (late) => {
      // counted after we stopped waiting: the filter counted this one, give the primary's slot back
      const r = (late as ConnectVerdict | undefined)?.rate;
      if (r && !r.refused) this.disconnect(ip, port);
    })) as ConnectVerdict | undefined;
    return v ?? { pregreetPassed: false };
  }

  disconnect(ip: string, port: number): void {
    this.client.tell("disconnect", [ip, port]);
  }

  pregreetPass(ip: string): void {
    this.client.tell("pregreet-pass", [ip]);
  }

  async authBlocked(ip: string): Promise<boolean> {
    const v = await this.client.ask("auth-blocked", [ip]);
    return typeof v === "boolean" ? v : this.own.throttle.blocked(ip);
  }

  async authFail(ip: string): Promise<number> {
    const mine = this.own.throttle.fail(ip);
    const v = await this.client.ask("auth-fail", [ip]);
    return typeof v === "number" ? v : mine;
  }
}

/**
 * The primary's side: answers the acceptors' asks from `anvil`; connections
 * are held per acceptor, so a dead one's are freed.
 */
export function anvilServer(anvil: LocalAnvil): AnvilServer {
  const str = (v: unknown) => (typeof v === "string" ? v : "");
  const num = (v: unknown) => (typeof v === "number" ? v : 0);
  return new AnvilServer(
    {
      connect: (w: Worker, [ip, port, count]) => anvil.connectNow(str(ip), num(port), count === true, w),
      disconnect: (w: Worker, [ip, port]) => anvil.disconnect(str(ip), num(port), w),
      "pregreet-pass": (_w, [ip]) => anvil.pregreetPass(str(ip)),
      "auth-blocked": (_w, [ip]) => anvil.throttle.blocked(str(ip)),
      "auth-fail": (_w, [ip]) => anvil.throttle.fail(str(ip)),
    },
    (w) => anvil.releaseHolder(w),
  );
}
