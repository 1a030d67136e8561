/**
 * Host-wide limits for a service on several processes (Postfix's anvil(8)):
 * the state lives in the cluster primary (workers.ts), the workers ask it
 * over the cluster IPC channel. This file is the channel: a worker's
 * AnvilClient (ask with a deadline, or tell and forget) and the primary's
 * AnvilServer, which answers from a table of operations and frees a dead
 * worker's slots. What is counted is the service's: smtp/anvil.ts (client
 * rate, AUTH throttle, pregreet passes, connections on the host) and
 * limits.ts (connections per address and per account, failed logins: IMAP).
 *
 * The primary not answering within ANVIL_TIMEOUT_MS (busy, restarting): ask()
 * resolves to undefined and the caller falls back to its own process's count
 * (each service documents its rule). An answer that comes after that is
 * handed to the ask's `late` callback, so a slot the primary did take is given
 * back rather than held until the worker dies.
 */
import type { Worker } from "node:cluster";

/** How long a worker waits for the primary's answer. */
export const ANVIL_TIMEOUT_MS = 250;

const P = "mailinfra-anvil:";
type Ask = { type: `${typeof P}ask`; id: number; op: string; args: unknown[] };
type Tell = { type: `${typeof P}tell`; op: string; args: unknown[] };
type Answer = { type: `${typeof P}answer`; id: number; value: unknown };

interface Pending {
  done(value: unknown): void;
  late?: ((value: unknown) => void) | undefined;
}

/** One table per process: every AnvilClient shares the message listener and the ids. */
let seq = 0;
const pending = new Map<number, Pending>();
const lateOnes = new Map<number, (value: unknown) => void>();
let listening = false;

/** Takes an answer from the primary (process.on("message"); a test channel calls it directly). */
export function anvilAnswer(m: unknown): void {
  const a = m as Answer | undefined;
  if (a?.type !== `${P}answer`) return;
  const p = pending.get(a.id);
  if (p) {
    p.done(a.value);
    return;
  }
  const late = lateOnes.get(a.id);
  lateOnes.delete(a.id);
  late?.(a.value);
}

/** How a worker reaches the primary: send() is false when there is no channel (nothing sent). */
export interface AnvilChannel {
  send(message: unknown): boolean;
}

/** The cluster IPC channel of this process. */
export const processChannel: AnvilChannel = {
  send(message) {
    if (!listening) {
      listening = true;
      process.on("message", anvilAnswer);
    }
    if (!process.connected || !process.send) return false;
    process.send(message, undefined, {}, () => undefined);
    return true;
  },
};

/** A worker's way to the primary's anvil. */
export class AnvilClient {
  constructor(
    private readonly timeoutMs = ANVIL_TIMEOUT_MS,
    private readonly channel: AnvilChannel = processChannel,
  ) {}

  /** The primary's answer, or undefined when it is silent for timeoutMs (then `late` gets the answer). */
  ask(op: string, args: unknown[], late?: (value: unknown) => void): Promise<unknown> {
    return new Promise((resolve) => {
      const id = ++seq;
      const finish = (value: unknown, timedOut: boolean) => {
        clearTimeout(timer);
        pending.delete(id);
        if (timedOut && late) {
          lateOnes.set(id, late);
          // an answer is not owed for ever
          setTimeout(() => lateOnes.delete(id), 60_000).unref();
        }
        resolve(value);
      };
      const timer = setTimeout(() => finish(undefined, true), this.timeoutMs);
      pending.set(id, { done: (v) => finish(v, false), late });
      if (!this.channel.send({ type: `${P}ask`, id, op, args } satisfies Ask)) finish(undefined, false);
    });
  }

  tell(op: string, args: unknown[]): void {
    this.channel.send({ type: `${P}tell`, op, args } satisfies Tell);
  }
}

/** An operation in the primary: the asking worker, the ask's arguments → the answer. */
export type AnvilOp = (worker: Worker, args: unknown[]) => unknown;

/** The primary's side: answers asks and takes tells from the workers. */
export class AnvilServer {
  constructor(
    private readonly ops: Record<string, AnvilOp>,
    /** A worker exited: free what it held. */
    private readonly onRelease: (worker: Worker) => void,
  ) {}

  /** Returns false for messages that are not the anvil's. */
  handle(worker: Worker, m: Ask | Tell | { type?: unknown }): boolean {
    if (m?.type === `${P}tell`) {
      const t = m as Tell;
      this.ops[t.op]?.(worker, Array.isArray(t.args) ? t.args : []);
      return true;
    }
    if (m?.type !== `${P}ask`) return false;
    const a = m as Ask;
    const op = this.ops[a.op];
    const value = op ? op(worker, Array.isArray(a.args) ? a.args : []) : undefined;
    if (worker.isConnected())
      worker.send({ type: `${P}answer`, id: a.id, value } satisfies Answer, () => undefined);
    return true;
  }

  release(worker: Worker): void {
    this.onRelease(worker);
  }
}

/**
 * Counted slots per key (an address, an account, the host) with the holder of
 * each, so a dead worker's are freed. A single process uses one holder.
 */
export class SlotTable<H = unknown> {
  private readonly counts = new Map<string, number>();
  private readonly held = new Map<H, Map<string, number>>();

  count(key: string): number {
    return this.counts.get(key) ?? 0;
  }

  /** Takes a slot of `key` for `holder` unless `limit` are taken (limit ≤ 0: no limit). */
  claim(key: string, limit: number, holder: H): boolean {
    const n = this.count(key);
    if (limit > 0 && n >= limit) return false;
    this.counts.set(key, n + 1);
    const mine = this.held.get(holder) ?? new Map<string, number>();
    this.held.set(holder, mine);
    mine.set(key, (mine.get(key) ?? 0) + 1);
    return true;
  }

  /** Gives back one of `holder`'s slots of `key`; a slot it does not hold is ignored. */
  release(key: string, holder: H): void {
    const mine = this.held.get(holder);
    const h = mine?.get(key) ?? 0;
    if (!mine || h <= 0) return;
    if (h === 1) mine.delete(key);
    else mine.set(key, h - 1);
    if (mine.size === 0) this.held.delete(holder);
    const n = this.count(key) - 1;
    if (n <= 0) this.counts.delete(key);
    else this.counts.set(key, n);
  }

  /** Gives back every slot of `holder` (a worker that exited). */
  releaseHolder(holder: H): void {
    for (const [key, h] of this.held.get(holder) ?? []) {
      const n = this.count(key) - h;
      if (n <= 0) this.counts.delete(key);
      else this.counts.set(key, n);
    }
    this.held.delete(holder);
  }
}

/** Failures per key (a client address) in a window that starts at the first one. */
export class FailureCounter {
  private readonly entries = new Map<string, { count: number; since: number }>();

  constructor(
    private readonly windowMs: number,
    private readonly now: () => number = Date.now,
    private readonly maxEntries = 100_000,
  ) {}

  count(key: string): number {
    const e = this.entries.get(key);
    if (e && this.now() - e.since > this.windowMs) {
      this.entries.delete(key);
      return 0;
    }
    return e?.count ?? 0;
  }

  add(key: string): number {
    const count = this.count(key) + 1;
    const since = this.entries.get(key)?.since ?? this.now();
    this.entries.set(key, { count, since });
    if (this.entries.size > this.maxEntries) {
      for (const k of [...this.entries.keys()]) this.count(k);
      if (this.entries.size > this.maxEntries) this.entries.clear();
    }
    return count;
  }
}
