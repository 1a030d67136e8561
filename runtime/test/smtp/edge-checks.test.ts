/**
 * The filter's connection and envelope checks as a real client meets them,
 * through the SMTP listeners (one process): filter.rate.maxConcurrent counts
 * a client address's open connections (python3 sockets), and SPF, DKIM and
 * DMARC judge the socket's address and the MAIL FROM against records served
 * by dnsmasq (python3 smtplib), either refusing at MAIL FROM (spf.rejectFail)
 * or writing Authentication-Results and Received-SPF into the delivered
 * message. filter/connection.test.ts and filter/auth.test.ts test the same
 * checks through the pipeline's API; queue/cluster.test.ts has the
 * concurrency limit with smtp.workers = 2.
 */
import { generateKeyPairSync } from "node:crypto";
import { mkdtemp } from "node:fs/promises";
import { join } from "node:path";
import { dkimSign } from "mailauth";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Daemon, startDnsmasq } from "../filter/daemons.js";
import {
  concurrencyProbe,
  makeConfig,
  python,
  type Running,
  startService,
  startWorld,
  type World,
} from "./harness.js";

const dkimKey = (() => {
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  return {
    pem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    dns: `v=DKIM1; k=rsa; p=${publicKey.export({ type: "spki", format: "der" }).toString("base64")}`,
  };
})();

let world: World;
let dns: Daemon & { server: string };
/** filter.rate.maxConcurrent = 3, the other checks off. */
let limited: Running;
/** SPF, DKIM and DMARC on; an SPF fail scores (tagging). */
let tagging: Running;
/** The same with spf.rejectFail. */
let rejecting: Running;

const authFilter = (spf: Record<string, unknown>) => ({
  dnsServers: [dns.server],
  dnsTimeoutMs: 1000,
  rate: { maxConnectionsPerMinute: 0, maxConcurrent: 0 },
  helo: { enabled: false },
  spf: { enabled: true, ...spf },
  dkim: { enabled: true },
  dmarc: { enabled: true },
  arc: { enabled: false },
});

beforeAll(async () => {
  world = await startWorld();
  dns = await startDnsmasq({
    txt: {
      // Only 127.0.0.2 may send for these; the tests connect from 127.0.0.1 (fail) and 127.0.0.2 (pass).
      "denied.test": "v=spf1 ip4:127.0.0.2 -all",
      "strict.test": "v=spf1 ip4:127.0.0.2 -all",
      "_dmarc.strict.test": "v=DMARC1; p=reject",
      "allowed.test": "v=spf1 ip4:127.0.0.1 -all",
      "_dmarc.allowed.test": "v=DMARC1; p=reject",
      "s1._domainkey.allowed.test": dkimKey.dns,
    },
  });
  const service = async (filter: Record<string, unknown>) =>
    startService(
      world,
      makeConfig({ queueDir: await mkdtemp(join(world.dir, "queue-")), lmtpPort: world.lmtp.port, filter }),
    );
  limited = await service({
    dnsServers: ["127.0.0.1:9"],
    rate: { maxConnectionsPerMinute: 0, maxConcurrent: 3 },
    helo: { enabled: false },
    spf: { enabled: false },
    dkim: { enabled: false },
    dmarc: { enabled: false },
    arc: { enabled: false },
  });
  tagging = await service(authFilter({ rejectFail: false }));
  rejecting = await service(authFilter({ rejectFail: true }));
});

afterAll(async () => {
  for (const s of [limited, tagging, rejecting]) await s?.service.drain(1000);
  await dns?.stop();
  await world?.stop();
});

const TOO_MANY = "421 4.7.0 Too many connections from your address, try again later";

describe("filter.rate.maxConcurrent on the wire (one process)", () => {
  it("greets 3 connections from one address, refuses the 4th with 421 4.7.0, and frees a slot when one closes", async () => {
    const lines = await concurrencyProbe(limited.mx, 3);
    expect(lines.map((l) => l.slice(0, 3))).toEqual(["220", "220", "220", "421", "220", "220", "421"]);
    // The client's own limit (filter/rate.ts), not the host's smtp.maxConnections (4.3.2).
    expect(lines[3]).toBe(TOO_MANY);
    expect(lines[6]).toBe(TOO_MANY);
    expect(lines[0]).toMatch(/^220 mx\.example\.org /);
  });
});

interface Sent {
  mail: string;
  data?: string;
}

/**
 * One smtplib session from `source`: MAIL FROM `sender`, RCPT alice, DATA
 * `message` (base64, sent as is) if MAIL was taken. Prints the replies.
 */
async function send(port: number, source: string, sender: string, message: Buffer): Promise<Sent> {
  const out = await python(
    `
import smtplib, sys, json, base64
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), local_hostname="mail.sender.test", source_address=(sys.argv[2], 0))
s.ehlo()
code, text = s.docmd("MAIL", "FROM:<" + sys.argv[3] + ">")
r = {"mail": "%d %s" % (code, text.decode())}
if code == 250:
    assert s.docmd("RCPT", "TO:<alice@example.org>")[0] == 250
    code, text = s.data(base64.b64decode(sys.argv[4]))
    r["data"] = "%d %s" % (code, text.decode())
s.quit()
print(json.dumps(r))
`,
    [String(port), source, sender, message.toString("base64")],
  );
  return JSON.parse(out) as Sent;
}

function plain(from: string, subject: string): Buffer {
  return Buffer.from(
    [
      `From: ${from}`,
      "To: alice@example.org",
      `Subject: ${subject}`,
      "Date: Mon, 7 Dec 2026 12:00:00 +0000",
      `Message-ID: <${subject}@sender.test>`,
      "",
      `Hello from ${from}`,
      "",
    ].join("\r\n"),
  );
}

/** The message with this Subject as the store received it (the LMTP sink). */
async function delivered(subject: string): Promise<string> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const m = world.lmtp.messages.find((x) => x.data.includes(`Subject: ${subject}\r\n`));
    if (m) return m.data.toString();
    if (Date.now() > deadline) throw new Error(`${subject} not delivered`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The header block (top of the message) unfolded. */
const head = (message: string) => message.slice(0, message.indexOf("\r\n\r\n")).replace(/\r\n[ \t]+/g, " ");

describe("SPF at the SMTP edge (the socket's address and MAIL FROM, records on dnsmasq)", () => {
  it("spf.rejectFail: 550 5.7.23 at MAIL FROM for an address the domain's -all excludes", async () => {
    const r = await send(rejecting.mx, "127.0.0.1", "news@denied.test", plain("news@denied.test", "never"));
    expect(r.mail).toBe(
      "550 5.7.23 SPF validation failed: denied.test does not designate 127.0.0.1 as permitted sender",
    );
    expect(r.data).toBeUndefined();
  });

  it("spf.rejectFail: the same sender from the address its record permits is taken", async () => {
    const r = await send(
      rejecting.mx,
      "127.0.0.2",
      "news@denied.test",
      plain("news@denied.test", "spf-permitted"),
    );
    expect(r.mail).toBe("250 2.1.0 Accepted");
    expect(r.data).toMatch(/^250 2\.0\.0 Ok: queued as /);
    const h = head(await delivered("spf-permitted"));
    expect(h).toMatch(/^Received-SPF: pass .*127\.0\.0\.2/m);
    expect(h).toMatch(
      /^Authentication-Results: mx\.example\.org;.* spf=pass \([^)]*designates 127\.0\.0\.2 as permitted sender\) smtp\.mailfrom=news@denied\.test/m,
    );
  });

  it("tagging (no rejectFail): an SPF fail is delivered with spf=fail in Authentication-Results and Received-SPF", async () => {
    const r = await send(
      tagging.mx,
      "127.0.0.1",
      "news@denied.test",
      plain("news@denied.test", "spf-fail-tagged"),
    );
    expect(r.mail).toBe("250 2.1.0 Accepted");
    expect(r.data).toMatch(/^250 2\.0\.0 Ok: queued as /);
    const h = head(await delivered("spf-fail-tagged"));
    expect(h).toMatch(/^Received-SPF: fail .*127\.0\.0\.1/m);
    expect(h).toMatch(
      /^Authentication-Results: mx\.example\.org;.* spf=fail \([^)]*does not designate 127\.0\.0\.1 as permitted sender\) smtp\.mailfrom=news@denied\.test/m,
    );
    expect(h).not.toMatch(/spf=pass/);
    // Scored by spf.failScore (3), below spamTagScore (5): delivered, not flagged.
    expect(h).toMatch(/^X-Spam-Status: No, score=3\.0 required=5\.0 tests=MI_SPF$/m);
    expect(h).not.toMatch(/^X-Spam-Flag:/m);
  });
});

describe("DKIM and DMARC at the SMTP edge", () => {
  it("a message signed with a key in DNS, from an SPF-permitted address: dkim, spf and dmarc pass", async () => {
    const msg = plain("news@allowed.test", "dkim-signed");
    const key = { signingDomain: "allowed.test", selector: "s1", privateKey: dkimKey.pem };
    const { signatures, errors } = await dkimSign(msg, { ...key, signatureData: [key] });
    expect(errors).toEqual([]);
    const r = await send(
      tagging.mx,
      "127.0.0.1",
      "news@allowed.test",
      Buffer.concat([Buffer.from(signatures), msg]),
    );
    expect(r.data).toMatch(/^250 2\.0\.0 Ok: queued as /);
    const h = head(await delivered("dkim-signed"));
    const ar = /^Authentication-Results: (.*)$/m.exec(h)?.[1] ?? "";
    expect(ar).toMatch(/^mx\.example\.org;/);
    expect(ar).toMatch(/dkim=pass header\.i=@allowed\.test header\.s=s1/);
    expect(ar).toMatch(
      /spf=pass \([^)]*designates 127\.0\.0\.1 as permitted sender\) smtp\.mailfrom=news@allowed\.test/,
    );
    expect(ar).toMatch(/dmarc=pass \(p=REJECT\) header\.from=allowed\.test/);
  });

  it("an unsigned From: of a p=reject domain from an address its SPF excludes is refused 550 5.7.1 at DATA", async () => {
    const r = await send(
      tagging.mx,
      "127.0.0.1",
      "news@strict.test",
      plain("ceo@strict.test", "dmarc-forged"),
    );
    expect(r.mail).toBe("250 2.1.0 Accepted");
    expect(r.data).toBe("550 5.7.1 Email rejected per DMARC policy for strict.test");
    await new Promise((r) => setTimeout(r, 300));
    expect(world.lmtp.messages.some((m) => m.data.includes("Subject: dmarc-forged\r\n"))).toBe(false);
  });
});
