/**
 * The anvil's in-process state (smtp/anvil.ts), as the primary keeps it for
 * every acceptor: the client rate counted per address with slots freed on
 * disconnect, AUTH failures, pregreet passes, the host's smtp.maxConnections
 * with each acceptor's connections freed when it dies. The IPC side is tested
 * with two acceptors in runtime/test/queue/cluster.test.ts.
 */
import { describe, expect, it } from "vitest";
import { LocalAnvil, RemoteAnvil } from "../../src/smtp/anvil.js";

const limits = {
  authFailuresBeforeDelay: 2,
  authFailuresBeforeBlock: 3,
  authFailureWindowSeconds: 60,
  pregreetPassTtlSeconds: 60,
};

describe("LocalAnvil", () => {
  it("counts connections against filter.rate when it holds the rate (the primary)", async () => {
    const anvil = new LocalAnvil({ ...limits, rate: { maxConnectionsPerMinute: 0, maxConcurrent: 2 } });
    expect((await anvil.connect("192.0.2.1", 1001, true)).rate).toEqual({});
    expect((await anvil.connect("::ffff:192.0.2.1", 1002, true)).rate).toEqual({});
    expect((await anvil.connect("192.0.2.1", 1003, true)).rate?.refused).toMatch(/2 concurrent .*limit 2/);
    // not subject to the limits (trusted, submission): not counted
    expect((await anvil.connect("192.0.2.1", 1004, false)).rate).toBeUndefined();
    anvil.disconnect("192.0.2.1", 1001);
    expect((await anvil.connect("192.0.2.1", 1005, true)).rate).toEqual({});
    expect((await anvil.connect("192.0.2.9", 1006, true)).rate).toEqual({});
  });

  it("leaves counting to the filter without a rate (one process)", async () => {
    const anvil = new LocalAnvil(limits);
    expect((await anvil.connect("192.0.2.1", 1, true)).rate).toBeUndefined();
  });

  it("throttles AUTH failures and remembers pregreet passes per address", async () => {
    const anvil = new LocalAnvil(limits);
    expect(await anvil.authFail("192.0.2.1")).toBe(0);
    expect(await anvil.authFail("192.0.2.1")).toBe(1000);
    expect(await anvil.authBlocked("192.0.2.1")).toBe(false);
    await anvil.authFail("192.0.2.1");
    expect(await anvil.authBlocked("192.0.2.1")).toBe(true);
    expect(await anvil.authBlocked("192.0.2.2")).toBe(false);
    expect((await anvil.connect("192.0.2.3", 1, false)).pregreetPassed).toBe(false);
    anvil.pregreetPass("192.0.2.3");
    expect((await anvil.connect("192.0.2.3", 2, false)).pregreetPassed).toBe(true);
  });

  it("counts every connection against the host's maxConnections (the primary), per holder", async () => {
    const anvil = new LocalAnvil({ ...limits, maxConnections: 2 });
    const [w1, w2] = [{ acceptor: 1 }, { acceptor: 2 }];
    // trusted and submission clients too (count: false), but not against a rate
    expect(anvil.connectNow("192.0.2.1", 1, false, w1).rate).toEqual({});
    expect(anvil.connectNow("192.0.2.2", 2, true, w2).rate).toEqual({});
    const full = anvil.connectNow("192.0.2.3", 3, true, w2);
    expect(full.full).toMatch(/2 connections on this host \(smtp\.maxConnections 2\)/);
    expect(full.rate, "not counted").toBeUndefined();
    // a disconnect from another holder, or twice, frees nothing
    anvil.disconnect("192.0.2.1", 1, w2);
    expect(anvil.connectionCount).toBe(2);
    anvil.disconnect("192.0.2.2", 2, w2);
    anvil.disconnect("192.0.2.2", 2, w2);
    expect(anvil.connectionCount).toBe(1);
    expect(anvil.connectNow("192.0.2.3", 3, true, w2).rate).toEqual({});
    // an acceptor that died: its connections are gone
    anvil.releaseHolder(w1);
    expect(anvil.connectionCount).toBe(1);
    expect(anvil.connectNow("192.0.2.4", 4, true, w1).rate).toEqual({});
    expect(anvil.connectNow("192.0.2.5", 5, true, w1).full).toBeDefined();
  });

  it("fails open without a primary: no shared count, the acceptor's own AUTH throttle", async () => {
    const silent = { send: () => true };
    const anvil = new RemoteAnvil(limits, 50, silent);
    expect(await anvil.connect("192.0.2.1", 1, true)).toEqual({ pregreetPassed: false });
    expect(await anvil.authFail("192.0.2.1")).toBe(0);
    expect(await anvil.authFail("192.0.2.1")).toBe(1000);
    await anvil.authFail("192.0.2.1");
    expect(await anvil.authBlocked("192.0.2.1")).toBe(true);
  });
});
