/** Counting semaphores by key: per-destination concurrency limits. */
export class KeyedSemaphore {
  private readonly active = new Map<string, number>();
  private readonly waiting = new Map<string, Array<() => void>>();

  constructor(private readonly limit: number) {}

  async acquire(key: string): Promise<() => void> {
    const n = this.active.get(key) ?? 0;
    if (n >= this.limit) {
      await new Promise<void>((resolve) => {
        const queue = this.waiting.get(key) ?? [];
        queue.push(resolve);
        this.waiting.set(key, queue);
      });
    } else {
      this.active.set(key, n + 1);
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.get(key)?.shift();
      if (next) {
        next(); // the slot passes straight to the next waiter
        return;
      }
      this.waiting.delete(key);
      const left = (this.active.get(key) ?? 1) - 1;
      if (left <= 0) this.active.delete(key);
      else this.active.set(key, left);
    };
  }

  /** In use now for `key` (tests, metrics). */
  inUse(key: string): number {
    return this.active.get(key) ?? 0;
  }
}
