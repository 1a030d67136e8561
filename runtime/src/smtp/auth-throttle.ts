/**
 * AUTH failures counted per client IP: after `delayAfter` failures each
 * further reply is delayed (1 s, 2 s, 4 s … up to MAX_DELAY_MS); after
 * `blockAfter` AUTH is refused outright (454 4.7.0) without checking the
 * password, until the window passes. Successes do not reset the count: a
 * guessing client gains nothing from one good account.
 */
export const MAX_AUTH_DELAY_MS = 16_000;

interface Entry {
  failures: number;
  firstAt: number;
}

export class AuthThrottle {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly delayAfter: number,
    private readonly blockAfter: number,
    private readonly windowMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  private entry(ip: string): Entry | undefined {
    const e = this.entries.get(ip);
    if (e && this.now() - e.firstAt > this.windowMs) {
      this.entries.delete(ip);
      return undefined;
    }
    return e;
  }

  blocked(ip: string): boolean {
    return (this.entry(ip)?.failures ?? 0) >= this.blockAfter;
  }

  /** Records a failure; returns how long to hold the 535 reply. */
  fail(ip: string): number {
    const e = this.entry(ip) ?? { failures: 0, firstAt: this.now() };
    e.failures += 1;
    this.entries.set(ip, e);
    if (this.entries.size > 100_000) this.prune();
    if (e.failures < this.delayAfter) return 0;
    return Math.min(1000 * 2 ** (e.failures - this.delayAfter), MAX_AUTH_DELAY_MS);
  }

  private prune(): void {
    for (const ip of [...this.entries.keys()]) this.entry(ip);
  }
}
