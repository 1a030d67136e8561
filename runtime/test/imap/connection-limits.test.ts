/**
 * The connection limits an IMAP server counts against (cluster/limits.ts):
 * one process's (LocalConnectionLimits), the primary's table per worker, and
 * a worker's RemoteConnectionLimits falling back to its own count when the
 * primary does not answer. The IPC path with two real workers is
 * workers.test.ts.
 */
import { describe, expect, it } from "vitest";
import { anvilAnswer, FailureCounter } from "../../src/cluster/anvil.js";
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
    const silent = { send: () => true };
    const l = new RemoteConnectionLimits(values, 50, silent);
    expect(await l.claim("ip", "192.0.2.1")).toBe(true);
    expect(await l.claim("ip", "192.0.2.1")).toBe(true);
    expect(await l.claim("ip", "192.0.2.1")).toBe(false);
    l.release("ip", "192.0.2.1");
    expect(await l.claim("ip", "192.0.2.1")).toBe(true);
    expect(await l.authFailures("192.0.2.1", true)).toBe(1);
    expect(await l.authFailures("192.0.2.1", true)).toBe(2);
    expect(await l.authFailures("192.0.2.1", false)).toBe(2);
  });

  it("gives back a slot the primary granted after the worker stopped waiting", async () => {
    const sent: Array<{ type: string; id?: number; op: string; args: unknown[] }> = [];
    const channel = {
      send: (m: unknown) => {
        sent.push(m as (typeof sent)[number]);
        return true;
      },
    };
    const l = new RemoteConnectionLimits(values, 50, channel);
    expect(await l.claim("user", "alice")).toBe(true); // this process's own count
    const ask = sent[0]!;
    expect(ask).toMatchObject({ op: "claim", args: ["user", "alice"] });
    anvilAnswer({ type: "mailinfra-anvil:answer", id: ask.id, value: true });
    expect(sent[1]).toMatchObject({ type: "mailinfra-anvil:tell", op: "release", args: ["user", "alice"] });
    // an answer in time: the primary's slot, given back to it on release
    const claimed = l.claim("ip", "192.0.2.9");
    anvilAnswer({ type: "mailinfra-anvil:answer", id: sent[2]!.id, value: true });
    expect(await claimed).toBe(true);
    l.release("ip", "192.0.2.9");
    expect(sent[3]).toMatchObject({ op: "release", args: ["ip", "192.0.2.9"] });
  });
});
