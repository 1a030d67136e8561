/**
 * Per-client limits shared by every SMTP acceptor of a host (Postfix's
 * anvil(8)): the client connection rate and concurrency (filter/rate.ts), the
 * AUTH-failure throttle (auth-throttle.ts) and the pregreet passes
 * (greeting.ts). With smtp.workers > 1 the state lives in the primary
 * (cluster.ts) and acceptors reach it over the cluster IPC channel
 * (RemoteAnvil); a single process uses LocalAnvil, where the filter's own
 * RateLimiter keeps counting connections as before.
 *
 * Cost: connect is the one round trip per connection (rate verdict and
 * pregreet pass in one answer); disconnect and pregreet-pass are
 * fire-and-forget; AUTH asks only when a client authenticates.
 *
 * The primary not answering within ANVIL_TIMEOUT_MS (busy, restarting):
 *   connect rate   fails OPEN to the acceptor's own count (the filter's
 *                  RateLimiter, the per-process limit of before): refusing
 *                  every client with 421 because the primary is slow would
 *                  turn a hiccup into an outage; the limit is then at most
 *                  workers × configured.
 *   pregreet pass  "not passed": the client gets the pause (costs it a few
 *                  seconds, lets no early talker through).
 *   AUTH           the acceptor's own throttle, which records every failure
 *                  too: guessing stays throttled per process, users can log in.
 */
import type { Worker } from "node:cluster";
import type { RuntimeConfig } from "../config/schema.js";
import { RateLimiter } from "../filter/rate.js";
import { AuthThrottle } from "./auth-throttle.js";
import { PregreetCache } from "./greeting.js";

/** How long an acceptor waits for the primary's answer. */
export const ANVIL_TIMEOUT_MS = 250;

export interface ConnectVerdict {
  /** Set when the anvil counted the connection (then disconnect() frees it); refused: why, if over a limit. */
  rate?: { refused?: string };
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
  };
}

/** The anvil in one process: the single-process service, and the primary's state. */
export class LocalAnvil implements Anvil {
  readonly throttle: AuthThrottle;
  private readonly passed: PregreetCache;
  private readonly rate: RateLimiter | undefined;

  constructor(limits: AnvilLimits) {
    this.throttle = new AuthThrottle(
      limits.authFailuresBeforeDelay,
      limits.authFailuresBeforeBlock,
      limits.authFailureWindowSeconds * 1000,
    );
    this.passed = new PregreetCache(limits.pregreetPassTtlSeconds * 1000);
    this.rate = limits.rate ? new RateLimiter(limits.rate) : undefined;
  }

  connectNow(ip: string, port: number, count: boolean): ConnectVerdict {
    const pregreetPassed = this.passed.has(ip);
    if (!count || !this.rate) return { pregreetPassed };
    const r = this.rate.admitAddress(ip, port).result;
    return { pregreetPassed, rate: r.action ? { refused: r.detail ?? "over the limit" } : {} };
  }

  async connect(ip: string, port: number, count: boolean): Promise<ConnectVerdict> {
    return this.connectNow(ip, port, count);
  }

  disconnect(ip: string, port: number): void {
    this.rate?.release(ip, port);
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

const P = "mailinfra-anvil:";
type AskBody =
  | { op: "connect"; ip: string; port: number; count: boolean }
  | { op: "auth-blocked" | "auth-fail"; ip: string };
type Ask = AskBody & { type: `${typeof P}ask`; id: number };
type Tell = { type: `${typeof P}tell`; op: "disconnect" | "pregreet-pass"; ip: string; port: number };
type Answer = { type: `${typeof P}answer`; id: number; value: unknown };

/** An acceptor's anvil: asks the primary; on its silence, the fallbacks above. */
export class RemoteAnvil implements Anvil {
  private seq = 0;
  private readonly pending = new Map<number, (value: unknown) => void>();
  /** The fallback for AUTH (records every failure, so it is current when needed). */
  private readonly own: LocalAnvil;

  constructor(
    limits: Omit<AnvilLimits, "rate">,
    private readonly timeoutMs = ANVIL_TIMEOUT_MS,
  ) {
    this.own = new LocalAnvil({ ...limits });
    process.on("message", (m: Answer) => {
      if (m?.type === `${P}answer`) this.pending.get(m.id)?.(m.value);
    });
  }

  private ask(m: AskBody): Promise<unknown> {
    return new Promise((resolve) => {
      const id = ++this.seq;
      const done = (value: unknown) => {
        clearTimeout(timer);
        this.pending.delete(id);
        resolve(value);
      };
      const timer = setTimeout(() => done(undefined), this.timeoutMs);
      this.pending.set(id, done);
      if (!process.connected || !process.send) return done(undefined);
      process.send({ ...m, type: `${P}ask`, id } as Ask, undefined, {}, () => undefined);
    });
  }

  private tell(m: Omit<Tell, "type">): void {
    if (process.connected) process.send?.({ ...m, type: `${P}tell` } as Tell, undefined, {}, () => undefined);
  }

  async connect(ip: string, port: number, count: boolean): Promise<ConnectVerdict> {
    const v = (await this.ask({ op: "connect", ip, port, count })) as ConnectVerdict | undefined;
    return v ?? { pregreetPassed: false };
  }

  disconnect(ip: string, port: number): void {
    this.tell({ op: "disconnect", ip, port });
  }

  pregreetPass(ip: string): void {
    this.tell({ op: "pregreet-pass", ip, port: 0 });
  }

  async authBlocked(ip: string): Promise<boolean> {
    const v = await this.ask({ op: "auth-blocked", ip });
    return typeof v === "boolean" ? v : this.own.throttle.blocked(ip);
  }

  async authFail(ip: string): Promise<number> {
    const mine = this.own.throttle.fail(ip);
    const v = await this.ask({ op: "auth-fail", ip });
    return typeof v === "number" ? v : mine;
  }
}

/**
 * The primary's side: answers an acceptor's asks from `anvil`. Returns false
 * for other messages. Connections are remembered per acceptor, so a dead
 * one's slots are freed (release()).
 */
export class AnvilServer {
  private readonly held = new Map<Worker, Map<string, [string, number]>>();

  constructor(private readonly anvil: LocalAnvil) {}

  handle(worker: Worker, m: Ask | Tell | { type?: unknown }): boolean {
    if (m?.type === `${P}tell`) {
      const t = m as Tell;
      if (t.op === "disconnect") {
        this.anvil.disconnect(t.ip, t.port);
        this.held.get(worker)?.delete(`${t.ip} ${t.port}`);
      } else if (t.op === "pregreet-pass") this.anvil.pregreetPass(t.ip);
      return true;
    }
    if (m?.type !== `${P}ask`) return false;
    const a = m as Ask;
    let value: unknown;
    if (a.op === "connect") {
      const v = this.anvil.connectNow(a.ip, a.port, a.count);
      if (v.rate && !v.rate.refused) {
        const mine = this.held.get(worker) ?? new Map<string, [string, number]>();
        this.held.set(worker, mine);
        mine.set(`${a.ip} ${a.port}`, [a.ip, a.port]);
      }
      value = v;
    } else if (a.op === "auth-blocked") value = this.anvil.throttle.blocked(a.ip);
    else value = this.anvil.throttle.fail(a.ip);
    if (worker.isConnected())
      worker.send({ type: `${P}answer`, id: a.id, value } satisfies Answer, () => undefined);
    return true;
  }

  /** An acceptor exited: its connections are gone. */
  release(worker: Worker): void {
    for (const [ip, port] of this.held.get(worker)?.values() ?? []) this.anvil.disconnect(ip, port);
    this.held.delete(worker);
  }
}
