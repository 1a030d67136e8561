/** Failed logins per client address, remembered for a window: past a threshold every auth reply waits. */
import { AUTH_FAILURE_WINDOW_MS } from "./limits.js";

export class AuthThrottle {
  private readonly failures = new Map<string, { count: number; last: number }>();

  constructor(
    private readonly threshold: number,
    private readonly delayMs: number,
  ) {}

  /** How long to wait before answering this address's next login attempt. */
  delayFor(ip: string, now = Date.now()): number {
    const f = this.failures.get(ip);
    if (!f) return 0;
    if (now - f.last > AUTH_FAILURE_WINDOW_MS) {
      this.failures.delete(ip);
      return 0;
    }
    return f.count >= this.threshold ? this.delayMs : 0;
  }

  failed(ip: string, now = Date.now()): void {
    const f = this.failures.get(ip);
    this.failures.set(ip, { count: (f?.count ?? 0) + 1, last: now });
    if (this.failures.size > 100_000) {
      for (const [key, value] of this.failures)
        if (now - value.last > AUTH_FAILURE_WINDOW_MS) this.failures.delete(key);
    }
  }

  succeeded(ip: string): void {
    this.failures.delete(ip);
  }
}
