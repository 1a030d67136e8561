/**
 * DKIM, DMARC and ARC through mailauth's authenticate(), with keys and
 * policies published in a real DNS server (dnsmasq) and messages signed here
 * with mailauth's dkimSign / sealMessage.
 */
import { generateKeyPairSync } from "node:crypto";
import { dkimSign, sealMessage } from "mailauth";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createFilterPipeline } from "../../src/filter/index.js";
import type { Verdict } from "../../src/filter/types.js";
import { type Daemon, filterConfig, message, silentLogger, startDnsmasq } from "./daemons.js";

function rsaKey() {
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  return {
    pem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    dns: `v=DKIM1; k=rsa; p=${publicKey.export({ type: "spki", format: "der" }).toString("base64")}`,
  };
}

const dkimKey = rsaKey();
const arcKey = rsaKey();
let dns: Daemon & { server: string };

beforeAll(async () => {
  dns = await startDnsmasq({
    txt: {
      "s1._domainkey.signed.test": dkimKey.dns,
      "_dmarc.signed.test": "v=DMARC1; p=reject",
      "signed.test": "v=spf1 ip4:192.0.2.0/24 -all",
      "_dmarc.quarantine.test": "v=DMARC1; p=quarantine",
      "quarantine.test": "v=spf1 ip4:192.0.2.0/24 -all",
      "_dmarc.relaxed.test": "v=DMARC1; p=none",
      "relaxed.test": "v=spf1 ip4:192.0.2.0/24 -all",
      "arc._domainkey.forwarder.test": arcKey.dns,
    },
  });
});
afterAll(async () => {
  await dns?.stop();
});

const deps = {
  logger: silentLogger,
  localDomains: ["campus.example.edu"],
  hostname: "mx1.campus.example.edu",
};

function pipeline(section: Record<string, unknown> = {}) {
  return createFilterPipeline(
    filterConfig({ dnsServers: [dns.server], dnsTimeoutMs: 1000, ...section }),
    deps,
  );
}

async function deliver(
  msg: Buffer,
  ip: string,
  sender: string,
  section: Record<string, unknown> = {},
): Promise<Verdict> {
  const tx = pipeline(section).transaction();
  await tx.onConnect({ remoteAddress: ip, remotePort: 40001 });
  await tx.onHelo("mail.sender.test");
  await tx.onMailFrom(sender);
  await tx.onRcptTo("u@campus.example.edu");
  return tx.onData(msg, { helo: "mail.sender.test", mailFrom: sender, rcptTo: ["u@campus.example.edu"] });
}

const ar = (v: Verdict) => v.addHeaders.find(([n]) => n === "Authentication-Results")?.[1] ?? "";
const detail = (v: Verdict, check: string) => v.results.find((r) => r.check === check);

async function signed(from = "news@signed.test", body = "Hello from signed.test\r\n"): Promise<Buffer> {
  const msg = message(
    [
      `From: ${from}`,
      "To: u@campus.example.edu",
      "Subject: signed",
      "Date: Sun, 29 Nov 2026 05:00:00 +0000",
      "Message-ID: <1@signed.test>",
    ],
    body,
  );
  const key = { signingDomain: "signed.test", selector: "s1", privateKey: dkimKey.pem };
  // mailauth signs with the entries of signatureData (its top-level fields are the defaults).
  const { signatures, errors } = await dkimSign(msg, { ...key, signatureData: [key] });
  expect(errors).toEqual([]);
  expect(signatures).toMatch(/^DKIM-Signature: .*d=signed\.test/s);
  return Buffer.concat([Buffer.from(signatures), msg]);
}

describe("dkim + dmarc + spf in Authentication-Results", () => {
  it("a signed message from an SPF-permitted address passes all three", async () => {
    const v = await deliver(await signed(), "192.0.2.90", "news@signed.test");
    expect(v.action).toBe("accept");
    expect(detail(v, "dkim")).toMatchObject({ outcome: "pass", detail: "dkim=pass d=signed.test" });
    expect(detail(v, "dmarc")).toMatchObject({ outcome: "pass" });
    const header = ar(v);
    expect(header).toMatch(/^mx1\.campus\.example\.edu;/);
    expect(header).toMatch(/dkim=pass header\.i=@signed\.test header\.s=s1/);
    expect(header).toMatch(/spf=pass/);
    expect(header).toMatch(/dmarc=pass/);
    expect(v.addHeaders.some(([n, val]) => n === "Received-SPF" && val.startsWith("pass"))).toBe(true);
  });

  it("a body changed after signing fails DKIM (scored); aligned SPF still passes DMARC", async () => {
    const msg = (await signed()).toString().replace("Hello from", "Hello, altered, from");
    const v = await deliver(Buffer.from(msg), "192.0.2.90", "news@signed.test");
    expect(detail(v, "dkim")).toMatchObject({ outcome: "fail", score: 1 });
    expect(detail(v, "dmarc")?.outcome).toBe("pass");
    expect(ar(v)).toMatch(/dkim=neutral|dkim=fail/);
    expect(v.score).toBe(1);
  });

  it("a forged From: of a p=reject domain, unsigned and off its SPF, is refused 550 5.7.1", async () => {
    const msg = message(["From: ceo@signed.test", "Subject: wire money"], "now\r\n");
    const v = await deliver(msg, "203.0.113.5", "bounce@elsewhere.test");
    expect(v).toMatchObject({ action: "reject", code: 550, enhanced: "5.7.1", decidedBy: "dmarc" });
    expect(v.message).toBe("Email rejected per DMARC policy for signed.test");
  });

  it("with dmarc.enforce off the same message is only scored", async () => {
    const msg = message(["From: ceo@signed.test", "Subject: wire money"], "now\r\n");
    const v = await deliver(msg, "203.0.113.5", "bounce@elsewhere.test", { dmarc: { enforce: false } });
    expect(v.action).toBe("tag");
    expect(v.addHeaders).toContainEqual(["X-Spam-Flag", "YES"]);
  });

  it("p=quarantine lands in the spam folder: tagged with X-Spam-Flag: YES", async () => {
    const msg = message(["From: a@quarantine.test", "Subject: hi"], "hi\r\n");
    const v = await deliver(msg, "203.0.113.5", "a@quarantine.test");
    expect(v.action).toBe("tag");
    expect(v.score).toBeGreaterThanOrEqual(5);
    const status = v.addHeaders.find(([n]) => n === "X-Spam-Status")?.[1];
    expect(status).toMatch(/^Yes, score=\d+\.\d required=5\.0 tests=.*MI_DMARC/s);
  });

  it("p=none failing adds only dmarc.failScore", async () => {
    const msg = message(["From: a@relaxed.test", "Subject: hi"], "hi\r\n");
    const v = await deliver(msg, "203.0.113.5", "a@relaxed.test");
    expect(detail(v, "dmarc")).toMatchObject({ outcome: "fail", score: 1 });
  });

  it("trusted clients are not authenticated nor scored", async () => {
    const tx = pipeline().transaction();
    await tx.onConnect({ remoteAddress: "203.0.113.5", remotePort: 1, trustedNetwork: true });
    const v = await tx.onData(message(["From: ceo@signed.test"], "x\r\n"), {
      helo: "h",
      mailFrom: "ceo@signed.test",
      rcptTo: ["x@remote.test"],
    });
    expect(v.action).toBe("accept");
    expect(detail(v, "dmarc")?.outcome).toBe("skip");
    expect(v.addHeaders.find(([n]) => n === "X-Spam-Status")).toBeUndefined();
  });
});

describe("arc", () => {
  async function sealed(): Promise<Buffer> {
    const msg = message(
      ["From: a@relaxed.test", "To: list@forwarder.test", "Subject: via list"],
      "list post\r\n",
    );
    const seal = await sealMessage(msg, {
      signingDomain: "forwarder.test",
      selector: "arc",
      privateKey: arcKey.pem,
      authResults: "mx.forwarder.test; spf=pass smtp.mailfrom=a@relaxed.test",
      cv: "none",
    } as Parameters<typeof sealMessage>[1]);
    return Buffer.concat([seal, msg]);
  }

  it("a valid ARC set passes", async () => {
    const v = await deliver(await sealed(), "192.0.2.91", "list-bounces@forwarder.test");
    expect(detail(v, "arc")).toMatchObject({ outcome: "pass", detail: "arc=pass" });
    expect(ar(v)).toMatch(/arc=pass/);
  });

  it("a message changed after sealing breaks the chain (scored)", async () => {
    const msg = (await sealed()).toString().replace("list post", "changed post");
    const v = await deliver(Buffer.from(msg), "192.0.2.91", "list-bounces@forwarder.test");
    expect(detail(v, "arc")).toMatchObject({ outcome: "fail", score: 0.5 });
  });
});
