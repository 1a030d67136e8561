/**
 * Connection limits of a mail-access service (IMAP; the same shape fits
 * POP3): connections per client address, sessions per account, and failed
 * logins per address (for the delay). One process: LocalConnectionLimits.
 * Several (imap.workers > 1): the primary keeps one LocalConnectionLimits for
 * the host (connectionLimitOps over anvil.ts) and each worker asks it through
 * RemoteConnectionLimits, so the limits hold per host, not per worker.
 *
 * The primary silent for ANVIL_TIMEOUT_MS (busy, restarting): a claim fails
 * OPEN to this worker's own count against the same limit (refusing everyone
 * because the primary is slow would turn a hiccup into an outage; the limit
 * is then at most workers × configured), and the failure count is this
 * worker's own (it records every failure too, so guessing stays slowed).
 */
import type { Worker } from "node:cluster";
import {
  ANVIL_TIMEOUT_MS,
  type AnvilChannel,
  AnvilClient,
  type AnvilOp,
  FailureCounter,
  processChannel,
  SlotTable,
} from "./anvil.js";

export interface ConnectionLimitValues {
  maxConnectionsPerIp: number;
  maxConnectionsPerUser: number;
  /** How long failed logins from an address are remembered. */
  authFailureWindowMs: number;
}

export type SlotKind = "ip" | "user";

export interface ConnectionLimits {
  /** Takes a connection slot of the client address; false when it has maxConnectionsPerIp. */
  claim(kind: SlotKind, key: string): Promise<boolean>;
  release(kind: SlotKind, key: string): void;
  /** Failed logins from `ip` in the window, after recording one more when `add`. */
  authFailures(ip: string, add: boolean): Promise<number>;
}

const slotKey = (kind: SlotKind, key: string) => `${kind} ${key}`;

/** The limits in one process: the single-process service, and the primary's state for all. */
export class LocalConnectionLimits implements ConnectionLimits {
  readonly slots = new SlotTable<unknown>();
  readonly failures: FailureCounter;

  constructor(private readonly values: ConnectionLimitValues) {
    this.failures = new FailureCounter(values.authFailureWindowMs);
  }

  limit(kind: SlotKind): number {
    return kind === "ip" ? this.values.maxConnectionsPerIp : this.values.maxConnectionsPerUser;
  }

  claimNow(kind: SlotKind, key: string, holder: unknown = this): boolean {
    return this.slots.claim(slotKey(kind, key), this.limit(kind), holder);
  }

  releaseNow(kind: SlotKind, key: string, holder: unknown = this): void {
    this.slots.release(slotKey(kind, key), holder);
  }

  failuresNow(ip: string, add: boolean): number {
    return add ? this.failures.add(ip) : this.failures.count(ip);
  }

  async claim(kind: SlotKind, key: string): Promise<boolean> {
    return this.claimNow(kind, key);
  }

  release(kind: SlotKind, key: string): void {
    this.releaseNow(kind, key);
  }

  async authFailures(ip: string, add: boolean): Promise<number> {
    return this.failuresNow(ip, add);
  }
}

const isKind = (k: unknown): k is SlotKind => k === "ip" || k === "user";

/** The primary's operations over `limits`, for an AnvilServer; release it per worker with limits.slots.releaseHolder. */
export function connectionLimitOps(limits: LocalConnectionLimits): Record<string, AnvilOp> {
  return {
    claim: (worker: Worker, [kind, key]) =>
      isKind(kind) && typeof key === "string" ? limits.claimNow(kind, key, worker) : false,
    release: (worker: Worker, [kind, key]) => {
      if (isKind(kind) && typeof key === "string") limits.releaseNow(kind, key, worker);
    },
    failures: (_worker: Worker, [ip, add]) =>
      typeof ip === "string" ? limits.failuresNow(ip, add === true) : 0,
  };
}

/** A worker's limits: the primary's answer; on its silence, this process's own count. */
export class RemoteConnectionLimits implements ConnectionLimits {
  private readonly client: AnvilClient;
  /** This process's own count: every slot, and where it is held ("primary" or "own"). */
  private readonly own: LocalConnectionLimits;

  constructor(
    values: ConnectionLimitValues,
    timeoutMs = ANVIL_TIMEOUT_MS,
    channel: AnvilChannel = processChannel,
  ) {
    this.client = new AnvilClient(timeoutMs, channel);
    this.own = new LocalConnectionLimits(values);
  }

  async claim(kind: SlotKind, key: string): Promise<boolean> {
    const v = await this.client.ask("claim", [kind, key], (late) => {
      // the primary took the slot after all: give it back
      if (late === true) this.client.tell("release", [kind, key]);
    });
    if (typeof v === "boolean") {
      // counted here too (without a limit), so a silence later is judged on current numbers
      if (v) this.own.slots.claim(slotKey(kind, key), 0, "primary");
      return v;
    }
    return this.own.claimNow(kind, key, "own");
  }

  release(kind: SlotKind, key: string): void {
    const k = slotKey(kind, key);
    const before = this.own.slots.count(k);
    this.own.slots.release(k, "primary");
    if (this.own.slots.count(k) < before) this.client.tell("release", [kind, key]);
    else this.own.slots.release(k, "own");
  }

  async authFailures(ip: string, add: boolean): Promise<number> {
    const mine = this.own.failuresNow(ip, add);
    const v = await this.client.ask("failures", [ip, add]);
    return typeof v === "number" ? v : mine;
  }
}
