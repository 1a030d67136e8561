/**
 * The connection limits an IMAP server counts against (cluster/limits.ts):
 * one process's (LocalConnectionLimits), the primary's table per worker, and
 * a worker's RemoteConnectionLimits falling back to its own count when the
 * primary does not answer. The IPC path with two real workers is
 * workers.test.ts.
 */
import { describe, expect, it } from "vitest";
import { FailureCounter } from "../../src/cluster/anvil.js";
import { LocalConnectionLimits, RemoteConnectionLimits } from "../../src/cluster/limits.js";

const values = { maxConnectionsPerIp: 2, maxConnectionsPerUser: 1, authFailureWindowMs: 60_000 };

describe("LocalConnectionLimits", () => {
  it("counts per address and per account, each against its own limit", async () => {
    const l = new LocalConnectionLimits(values);
    expect(await l.claim("ip", "192.0.2.1")).toBe(true);
    expect(await l.claim("ip", "192.0.2.1")).toBe(true);
    expect(await l.claim("ip", "192.0.2.1")).toBe(false);
    expect(await l.claim("ip", "192.0.2.2")).toBe(true);
    expect(await l.claim("user", "alice")).toBe(true);
    expect(await l.claim("user", "alice")).toBe(false);
    l.release("ip", "192.0.2.1");
    expect(await l.claim("ip", "192.0.2.1")).toBe(true);
    l.release("user", "alice");
    expect(await l.claim("user", "alice")).toBe(true);
  });

  it("frees a dead worker's slots, and only a holder's own", () => {
    const l = new LocalConnectionLimits(values);
    const [w1, w2] = [{ worker: 1 }, { worker: 2 }];
    expect(l.claimNow("ip", "192.0.2.1", w1)).toBe(true);
    expect(l.claimNow("ip", "192.0.2.1", w2)).toBe(true);
    expect(l.claimNow("ip", "192.0.2.1", w2)).toBe(false);
    l.releaseNow("ip", "192.0.2.1", { worker: 3 });
    expect(l.claimNow("ip", "192.0.2.1", w2)).toBe(false);
    l.slots.releaseHolder(w1);
    expect(l.claimNow("ip", "192.0.2.1", w2)).toBe(true);
  });

  it("counts failed logins in a window from the first", () => {
    let now = 0;
    const f = new FailureCounter(1000, () => now);
    expect(f.add("192.0.2.1")).toBe(1);
    now = 900;
    expect(f.add("192.0.2.1")).toBe(2);
    expect(f.count("192.0.2.2")).toBe(0);
    now = 1001;
    expect(f.count("192.0.2.1")).toBe(0);
    expect(f.add("192.0.2.1")).toBe(1);
  });
});

describe("RemoteConnectionLimits without an answer from the primary", () => {
  it("fails open to this process's own count against the same limits", async () => {
    // this test process has no IPC channel: every ask goes unanswered
    const l = new RemoteConnectionLimits(values, 50);
    expect(await l.claim("ip", "192.0.2.1")).toBe(true);
    expect(await l.claim("ip", "192.0.2.1")).toBe(true);
    expect(await l.claim("ip", "192.0.2.1")).toBe(false);
    l.release("ip", "192.0.2.1");
    expect(await l.claim("ip", "192.0.2.1")).toBe(true);
    expect(await l.authFailures("192.0.2.1", true)).toBe(1);
    expect(await l.authFailures("192.0.2.1", true)).toBe(2);
    expect(await l.authFailures("192.0.2.1", false)).toBe(2);
  });
});
