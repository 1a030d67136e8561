import { describe, expect, it } from "vitest";
import { LookupCache, MAX_CACHE_ENTRIES, NEGATIVE_TTL_MS } from "../../src/directory/cache.js";

describe("LookupCache", () => {
  it("expires positive entries after the TTL and negative ones after NEGATIVE_TTL_MS", () => {
    let now = 0;
    const cache = new LookupCache<string>({ ttlMs: 60_000, now: () => now });
    cache.set("a", "alice");
    cache.set("x", null);
    expect(cache.get("a")).toBe("alice");
    expect(cache.get("x")).toBeNull();
    now = NEGATIVE_TTL_MS;
    expect(cache.get("x")).toBeUndefined();
    expect(cache.get("a")).toBe("alice");
    now = 60_000;
    expect(cache.get("a")).toBeUndefined();
  });

  it("keeps negative entries no longer than a short positive TTL", () => {
    let now = 0;
    const cache = new LookupCache<string>({ ttlMs: 1_000, now: () => now });
    cache.set("x", null);
    now = 1_000;
    expect(cache.get("x")).toBeUndefined();
  });

  it("stores nothing with TTL 0", () => {
    const cache = new LookupCache<string>({ ttlMs: 0 });
    cache.set("a", "alice");
    cache.set("x", null);
    expect(cache.size).toBe(0);
  });

  it("drops the oldest entries beyond maxEntries (MAX_CACHE_ENTRIES by default)", () => {
    expect(MAX_CACHE_ENTRIES).toBeGreaterThan(1000);
    const cache = new LookupCache<number>({ ttlMs: 60_000, maxEntries: 3 });
    for (let i = 0; i < 5; i++) cache.set(`k${i}`, i);
    expect(cache.size).toBe(3);
    expect(cache.get("k0")).toBeUndefined();
    expect(cache.get("k1")).toBeUndefined();
    expect(cache.get("k4")).toBe(4);
  });
});
