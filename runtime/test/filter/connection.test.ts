/**
 * Connection and envelope checks against a real DNS server (Debian's
 * dnsmasq serving the test blocklist zones and SPF records): dnsbl, rate,
 * helo, early-talker, sender/recipient access, spf — through the pipeline.
 */
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { reverseName } from "../../src/filter/dnsbl.js";
import { classifyHelo } from "../../src/filter/helo.js";
import { createFilterPipeline } from "../../src/filter/index.js";
import { RateLimiter } from "../../src/filter/rate.js";
import type { ConnectionInfo, FilterPipeline } from "../../src/filter/types.js";
import { type Daemon, filterConfig, silentLogger, startDnsmasq, startSilentDns } from "./daemons.js";

const fixture = (name: string) => join(import.meta.dirname, "fixtures", name);
const V6 = "2001:db8::1";
const V6_REVERSED = `1.${"0.".repeat(23)}8.b.d.0.1.0.0.2`;

let dns: Daemon & { server: string };
const deps = {
  logger: silentLogger,
  localDomains: ["campus.example.edu"],
  hostname: "mx1.campus.example.edu",
  localAddresses: ["198.18.0.10"],
};

beforeAll(async () => {
  dns = await startDnsmasq({
    a: {
      "2.0.0.127.bl.test": "127.0.0.2",
      "10.2.0.192.bl.test": "127.0.0.2",
      [`${V6_REVERSED}.bl.test`]: "127.0.0.3",
      "10.2.0.192.weak.test": "127.0.0.4",
      "20.2.0.192.weak.test": "127.0.0.4",
      "11.2.0.192.refused.test": "127.255.255.254",
    },
    txt: {
      "10.2.0.192.bl.test": "Listed in bl.test; see http://bl.test/lookup?192.0.2.10",
      "sender.test": "v=spf1 ip4:192.0.2.0/24 -all",
      "soft.test": "v=spf1 ip4:198.51.100.0/24 ~all",
      "hard.test": "v=spf1 ip4:198.51.100.0/24 -all",
    },
  });
});
afterAll(async () => {
  await dns?.stop();
});

function pipeline(section: Record<string, unknown>): FilterPipeline {
  return createFilterPipeline(
    filterConfig({ dnsServers: [dns.server], dnsTimeoutMs: 1000, ...section }),
    deps,
  );
}
const conn = (ip: string, extra: Partial<ConnectionInfo> = {}): ConnectionInfo => ({
  remoteAddress: ip,
  remotePort: 40000 + Math.floor(Math.random() * 20000),
  ...extra,
});

describe("dnsbl", () => {
  it("builds RFC 5782 query names: reversed octets, IPv6 nibbles, v4-mapped as v4", () => {
    expect(reverseName("192.0.2.99")).toBe("99.2.0.192");
    expect(reverseName("::ffff:192.0.2.99")).toBe("99.2.0.192");
    expect(reverseName(V6)).toBe(V6_REVERSED);
    expect(reverseName("2001:db8:1:2:3:4:5:6")).toBe(
      "6.0.0.0.5.0.0.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2",
    );
    expect(reverseName("::ffff:c000:0263")).toBe("99.2.0.192"); // node's spelling of the same mapped address
    expect(reverseName("not-an-ip")).toBeUndefined();
  });

  it("a listed client is refused with 554 5.7.1 naming the zone and its reason", async () => {
    const p = pipeline({ dnsbl: [{ zone: "bl.test", weight: 1 }] });
    const tx = p.transaction();
    const v = await tx.onConnect(conn("192.0.2.10"));
    expect(v).toMatchObject({ action: "reject", code: 554, enhanced: "5.7.1", decidedBy: "dnsbl" });
    expect(v.message).toBe(
      "Service unavailable; Client host [192.0.2.10] blocked using bl.test; Listed in bl.test; see http://bl.test/lookup?192.0.2.10",
    );
    const rec = tx.record();
    expect(rec).toMatchObject({
      client: { ip: "192.0.2.10" },
      action: "reject",
      decidedBy: "dnsbl",
      stage: "connect",
    });
    expect(
      (rec.checks as Array<{ check: string; detail?: string }>).find((c) => c.check === "dnsbl")?.detail,
    ).toBe("listed in bl.test (127.0.0.2)");
  });

  it("RFC 5782 §5 test address 127.0.0.2 is listed; an unlisted client passes", async () => {
    const p = pipeline({ dnsbl: [{ zone: "bl.test" }] });
    expect((await p.transaction().onConnect(conn("127.0.0.2"))).action).toBe("reject");
    const v = await p.transaction().onConnect(conn("192.0.2.77"));
    expect(v.action).toBe("accept");
    expect(v.results.find((r) => r.check === "dnsbl")?.outcome).toBe("pass");
  });

  it("IPv6 clients are looked up by nibbles", async () => {
    const v = await pipeline({ dnsbl: [{ zone: "bl.test" }] })
      .transaction()
      .onConnect(conn(V6));
    expect(v.action).toBe("reject");
    expect(v.results.find((r) => r.check === "dnsbl")?.detail).toBe("listed in bl.test (127.0.0.3)");
  });

  it("weights add up: below dnsblRejectScore the score carries on, at it the client is refused", async () => {
    const zones = [
      { zone: "bl.test", weight: 2 },
      { zone: "weak.test", weight: 0.5 },
    ];
    const p = pipeline({ dnsbl: zones, dnsblRejectScore: 2.5 });
    const weakOnly = await p.transaction().onConnect(conn("192.0.2.20"));
    expect(weakOnly.action).toBe("accept");
    expect(weakOnly.score).toBe(0.5);
    const both = await p.transaction().onConnect(conn("192.0.2.10"));
    expect(both).toMatchObject({ action: "reject", score: 2.5 });
    expect(both.message).toMatch(/blocked using bl\.test, weak\.test/);
  });

  it("`answers` restricts which return codes count", async () => {
    const p = pipeline({ dnsbl: [{ zone: "bl.test", answers: ["127.0.0.4"] }] });
    expect((await p.transaction().onConnect(conn("192.0.2.10"))).action).toBe("accept");
  });

  it("127.255.255.x (query refused by the list) is an error, not a listing", async () => {
    const v = await pipeline({ dnsbl: [{ zone: "refused.test" }] })
      .transaction()
      .onConnect(conn("192.0.2.11"));
    expect(v.action).toBe("accept");
    expect(v.results.find((r) => r.check === "dnsbl")).toMatchObject({ outcome: "error" });
  });

  it("a DNS timeout is an error result, never a reject", async () => {
    const silent = await startSilentDns();
    try {
      const p = createFilterPipeline(
        filterConfig({ dnsbl: [{ zone: "bl.test" }], dnsServers: [silent.server], dnsTimeoutMs: 300 }),
        deps,
      );
      const started = Date.now();
      const v = await p.transaction().onConnect(conn("192.0.2.10"));
      expect(Date.now() - started).toBeLessThan(3000);
      expect(v.action).toBe("accept");
      expect(v.results.find((r) => r.check === "dnsbl")).toMatchObject({
        outcome: "error",
        detail: "ETIMEOUT bl.test",
      });
    } finally {
      await silent.stop();
    }
  });

  it("trusted networks and the submission port are not looked up", async () => {
    const p = pipeline({ dnsbl: [{ zone: "bl.test" }] });
    expect((await p.transaction().onConnect(conn("192.0.2.10", { trustedNetwork: true }))).action).toBe(
      "accept",
    );
    expect((await p.transaction().onConnect(conn("192.0.2.10", { submission: true }))).action).toBe("accept");
  });
});

describe("early-talker", () => {
  it("a client that talked before the greeting is refused", async () => {
    const v = await pipeline({})
      .transaction()
      .onConnect(conn("192.0.2.30", { earlyTalker: true }));
    expect(v).toMatchObject({ action: "reject", code: 554, enhanced: "5.5.1", decidedBy: "early-talker" });
    expect(v.results.find((r) => r.check === "dnsbl")?.outcome).toBe("skip");
  });
});

describe("rate", () => {
  it("refuses over the per-IP rate and concurrency with 421 4.7.0; close() frees the slot", async () => {
    const p = pipeline({ rate: { maxConnectionsPerMinute: 5, maxConcurrent: 2 } });
    const a = p.transaction();
    const b = p.transaction();
    expect((await a.onConnect(conn("192.0.2.40"))).action).toBe("accept");
    expect((await b.onConnect(conn("192.0.2.40"))).action).toBe("accept");
    const c = await p.transaction().onConnect(conn("192.0.2.40"));
    expect(c).toMatchObject({ action: "tempfail", code: 421, enhanced: "4.7.0", decidedBy: "rate" });
    expect((await p.transaction().onConnect(conn("192.0.2.41"))).action).toBe("accept"); // another client
    a.close?.();
    a.close?.(); // idempotent
    expect((await p.transaction().onConnect(conn("192.0.2.40"))).action).toBe("accept");
  });

  it("counts a replayed onConnect of the same connection once; trusted clients are exempt", () => {
    let now = 0;
    const r = new RateLimiter({ maxConnectionsPerMinute: 2, maxConcurrent: 10 }, () => now);
    const session = (port: number, trusted = false) => ({
      conn: { remoteAddress: "192.0.2.50", remotePort: port, trustedNetwork: trusted },
      recipients: [],
      dns: async () => [],
    });
    expect(r.admit(session(1)).result.outcome).toBe("pass");
    expect(r.admit(session(1)).result.outcome).toBe("pass"); // replay
    expect(r.admit(session(2)).result.outcome).toBe("pass");
    expect(r.admit(session(3)).result).toMatchObject({ outcome: "fail", code: 421 });
    expect(r.admit(session(3, true)).result.outcome).toBe("skip");
    now += 61_000;
    expect(r.admit(session(3)).result.outcome).toBe("pass");
    expect(r.concurrent("::ffff:192.0.2.50")).toBe(3);
  });
});

describe("helo", () => {
  const us = {
    hostname: "mx1.campus.example.edu",
    domains: new Set(["campus.example.edu"]),
    addresses: new Set(["198.18.0.10"]),
  };
  it.each([
    ["mail.sender.test", undefined],
    ["[192.0.2.5]", undefined],
    ["[IPv6:2001:db8::5]", undefined],
    ["", "missing"],
    ["192.0.2.5", "bare-ip"],
    ["bad_name.test", "invalid"],
    ["-x.test", "invalid"],
    ["[999.1.1.1]", "invalid"],
    ["mx1.campus.example.edu", "claims-us"],
    ["campus.example.edu", "claims-us"],
    ["[198.18.0.10]", "claims-us"],
    ["localhost", "non-fqdn"],
  ])("%j → %s", (name, finding) => {
    expect(classifyHelo(name, us, "192.0.2.5")).toBe(finding);
  });

  it("refuses through the pipeline with Postfix's codes; with reject off it scores", async () => {
    const tx = pipeline({}).transaction();
    await tx.onConnect(conn("192.0.2.60"));
    expect(await tx.onHelo("localhost")).toMatchObject({ action: "reject", code: 504, enhanced: "5.5.2" });
    expect(await tx.onHelo("campus.example.edu")).toMatchObject({
      action: "reject",
      code: 550,
      enhanced: "5.7.1",
    });
    expect(await tx.onHelo("192.0.2.60")).toMatchObject({ action: "reject", code: 501 });
    expect((await tx.onHelo("mail.sender.test")).action).toBe("accept");
    const soft = pipeline({ helo: { reject: false, score: 1.5 } }).transaction();
    await soft.onConnect(conn("192.0.2.61"));
    expect(await soft.onHelo("localhost")).toMatchObject({ action: "accept", score: 1.5 });
  });
});

describe("sender and recipient access maps", () => {
  const maps = {
    senderAccess: `hash:${fixture("sender_access")}`,
    recipientAccess: fixture("recipient_access"),
    spf: { enabled: false },
  };

  it("REJECT / DEFER answer MAIL FROM with access(5) codes", async () => {
    const tx = pipeline(maps).transaction();
    await tx.onConnect(conn("192.0.2.70"));
    await tx.onHelo("mail.sender.test");
    expect(await tx.onMailFrom("spammer@bulk.test")).toMatchObject({
      action: "reject",
      code: 554,
      enhanced: "5.7.1",
      message: "<spammer@bulk.test>: Sender address rejected: Access denied",
    });
    const tx2 = pipeline(maps).transaction();
    await tx2.onConnect(conn("192.0.2.70"));
    expect(await tx2.onMailFrom("a@x.junk.test")).toMatchObject({
      action: "reject",
      code: 550,
      message: /Junk network/,
    });
    const tx3 = pipeline(maps).transaction();
    await tx3.onConnect(conn("192.0.2.70"));
    expect(await tx3.onMailFrom("annoying@x.test")).toMatchObject({
      action: "tempfail",
      code: 450,
      enhanced: "4.7.1",
    });
  });

  it("OK passes; HOLD is carried to the message's verdict", async () => {
    const tx = pipeline(maps).transaction();
    await tx.onConnect(conn("192.0.2.71"));
    expect((await tx.onMailFrom("a@partner.test")).action).toBe("accept");
    const held = pipeline({
      ...maps,
      dkim: { enabled: false },
      dmarc: { enabled: false },
      arc: { enabled: false },
    }).transaction();
    await held.onConnect(conn("192.0.2.71"));
    await held.onMailFrom("x@hold.test");
    await held.onRcptTo("u@campus.example.edu");
    const v = await held.onData(Buffer.from("Subject: x\r\n\r\nhi\r\n"), {
      helo: "h.test",
      mailFrom: "x@hold.test",
      rcptTo: ["u@campus.example.edu"],
    });
    expect(v.action).toBe("accept");
    expect(v.disposition).toBe("hold");
  });

  it("a refused recipient is refused alone; the others and the message go on", async () => {
    const tx = pipeline({
      ...maps,
      dkim: { enabled: false },
      dmarc: { enabled: false },
      arc: { enabled: false },
    }).transaction();
    await tx.onConnect(conn("192.0.2.72"));
    await tx.onMailFrom("friend@example.test");
    expect(await tx.onRcptTo("departed@campus.example.edu")).toMatchObject({
      action: "reject",
      code: 550,
      enhanced: "5.1.1",
      message:
        "<departed@campus.example.edu>: Recipient address rejected: This person has left; see the directory",
    });
    expect(await tx.onRcptTo("noreply@other.campus.example.edu")).toMatchObject({
      action: "reject",
      code: 554,
    });
    expect((await tx.onRcptTo("u@campus.example.edu")).action).toBe("accept");
    const v = await tx.onData(Buffer.from("Subject: x\r\n\r\nhi\r\n"), {
      helo: "h.test",
      mailFrom: "friend@example.test",
      rcptTo: ["u@campus.example.edu"],
    });
    expect(v.action).toBe("accept");
    const rec = tx.record();
    expect(rec.recipients).toEqual(["u@campus.example.edu"]);
    expect(rec.rejectedRecipients).toHaveLength(2);
  });
});

describe("spf (mailauth, resolver on dnsmasq)", () => {
  async function mailFrom(section: Record<string, unknown>, ip: string, sender: string) {
    const tx = pipeline(section).transaction();
    await tx.onConnect(conn(ip));
    await tx.onHelo("mail.sender.test");
    return tx.onMailFrom(sender);
  }

  it("pass, softfail, fail (scored) and none", async () => {
    const pass = await mailFrom({}, "192.0.2.80", "a@sender.test");
    expect(pass.results.find((r) => r.check === "spf")).toMatchObject({
      outcome: "pass",
      detail: "spf=pass (sender.test)",
    });
    const soft = await mailFrom({}, "192.0.2.80", "a@soft.test");
    expect(soft).toMatchObject({ action: "accept", score: 1 });
    const hard = await mailFrom({}, "192.0.2.80", "a@hard.test");
    expect(hard).toMatchObject({ action: "accept", score: 3 });
    expect(hard.results.find((r) => r.check === "spf")?.detail).toBe("spf=fail (hard.test)");
    const none = await mailFrom({}, "192.0.2.80", "a@nospf.test");
    expect(none.results.find((r) => r.check === "spf")?.detail).toBe("spf=none (nospf.test)");
  });

  it("with rejectFail, an SPF fail is refused with 550 5.7.23", async () => {
    const v = await mailFrom({ spf: { rejectFail: true } }, "192.0.2.80", "a@hard.test");
    expect(v).toMatchObject({ action: "reject", code: 550, enhanced: "5.7.23", decidedBy: "spf" });
  });

  it("a DNS timeout gives spf=temperror, an error result", async () => {
    const silent = await startSilentDns();
    try {
      const p = createFilterPipeline(filterConfig({ dnsServers: [silent.server], dnsTimeoutMs: 300 }), deps);
      const tx = p.transaction();
      await tx.onConnect(conn("192.0.2.81"));
      const v = await tx.onMailFrom("a@sender.test");
      expect(v.action).toBe("accept");
      expect(v.results.find((r) => r.check === "spf")).toMatchObject({
        outcome: "error",
        detail: "spf=temperror (sender.test)",
      });
    } finally {
      await silent.stop();
    }
  });

  it("authenticated clients are not checked", async () => {
    const tx = pipeline({}).transaction();
    await tx.onConnect(conn("192.0.2.82"));
    tx.onAuth?.("alice");
    const v = await tx.onMailFrom("a@hard.test");
    expect(v.results.find((r) => r.check === "spf")?.outcome).toBe("skip");
  });
});
