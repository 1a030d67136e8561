/**
 * A short-lived cache of directory lookups. Hits save a round trip per SMTP
 * recipient and per IMAP login; the TTL bounds how stale an alias or quota can
 * be. Negative answers ("no such address") are kept only briefly so that a new
 * account receives mail at once. Passwords are never stored here.
 */

/** A "no such account" answer is cached at most this long, whatever the configured TTL. */
export const NEGATIVE_TTL_MS = 5_000;
/** Entries kept at most; the oldest are dropped first. */
export const MAX_CACHE_ENTRIES = 50_000;

interface Entry<V> {
  value: V | null;
  expires: number;
}

export class LookupCache<V> {
  readonly #entries = new Map<string, Entry<V>>();
  readonly #ttlMs: number;
  readonly #negativeTtlMs: number;
  readonly #now: () => number;
  readonly #maxEntries: number;

  constructor(opts: { ttlMs: number; now?: () => number; maxEntries?: number }) {
    this.#ttlMs = opts.ttlMs;
    this.#negativeTtlMs = Math.min(opts.ttlMs, NEGATIVE_TTL_MS);
    this.#now = opts.now ?? Date.now;
    this.#maxEntries = opts.maxEntries ?? MAX_CACHE_ENTRIES;
  }

  /** undefined = not cached; null = cached "no such account". */
  get(key: string): V | null | undefined {
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    if (entry.expires <= this.#now()) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry.value;
  }

  set(key: string, value: V | null): void {
    const ttl = value === null ? this.#negativeTtlMs : this.#ttlMs;
    if (ttl <= 0) return;
    this.#entries.delete(key);
    this.#entries.set(key, { value, expires: this.#now() + ttl });
    while (this.#entries.size > this.#maxEntries) {
      const oldest = this.#entries.keys().next();
      if (oldest.done) break;
      this.#entries.delete(oldest.value);
    }
  }

  clear(): void {
    this.#entries.clear();
  }

  get size(): number {
    return this.#entries.size;
  }
}
