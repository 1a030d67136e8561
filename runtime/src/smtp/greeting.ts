/**
 * The pause before the greeting (Postfix postscreen's "pregreet" test).
 * RFC 5321 §4.3.1 has the client wait for the 220 before it says anything;
 * bulk senders that pipeline blindly talk at once. Before the greeting we send
 * the first line of a multi-line 220 (RFC 5321 §4.2.1, "220-name ESMTP"),
 * wait `pauseMs`, and note whether the client sent anything meanwhile. The
 * verdict is not taken here: the filter's `early-talker` check records it and
 * the pipeline decides (554 5.5.1).
 *
 * A client that stayed silent is remembered for `passTtlMs` (postscreen_greet_ttl)
 * and greeted at once on its next connections; trusted networks and submission
 * are never paused (postscreen_access_list = permit_mynetworks).
 */
import type { Socket } from "node:net";

/** Cached passes kept at most (oldest dropped first). */
export const MAX_PREGREET_CACHE = 100_000;

export interface PregreetOutcome {
  /** Bytes the client sent before the greeting (0 for a polite client). */
  earlyBytes: number;
  /** How long we waited (0 when the test was skipped). */
  waitedMs: number;
  /** The client hung up during the pause. */
  gone: boolean;
}

/** IP → time its pass expires. */
export class PregreetCache {
  private readonly passed = new Map<string, number>();

  constructor(
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  has(ip: string): boolean {
    const until = this.passed.get(ip);
    if (until === undefined) return false;
    if (until > this.now()) return true;
    this.passed.delete(ip);
    return false;
  }

  pass(ip: string): void {
    if (this.ttlMs <= 0) return;
    this.passed.delete(ip);
    this.passed.set(ip, this.now() + this.ttlMs);
    if (this.passed.size > MAX_PREGREET_CACHE) {
      const oldest = this.passed.keys().next().value;
      if (oldest !== undefined) this.passed.delete(oldest);
    }
  }
}

/**
 * Waits `pauseMs` with `banner` (if any) sent, counting what the client says.
 * Anything it sends is consumed: an early talker is refused anyway, and its
 * words must not reach the command parser. The socket is left paused.
 */
export function pregreet(
  socket: Socket,
  pauseMs: number,
  banner: string | undefined,
): Promise<PregreetOutcome> {
  return new Promise((resolve) => {
    const started = performance.now();
    let earlyBytes = 0;
    const onData = (chunk: Buffer) => {
      earlyBytes += chunk.length;
    };
    const finish = (gone: boolean) => {
      clearTimeout(timer);
      socket.removeListener("data", onData);
      socket.removeListener("close", onClose);
      socket.pause();
      resolve({ earlyBytes, waitedMs: Math.round(performance.now() - started), gone });
    };
    const onClose = () => finish(true);
    const timer = setTimeout(() => finish(socket.destroyed), pauseMs);
    socket.on("data", onData);
    socket.once("close", onClose);
    if (banner) socket.write(`220-${banner.replace(/[\r\n]+/g, " ")}\r\n`);
  });
}
