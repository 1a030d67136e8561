/**
 * SpamAssassin's spamd and ClamAV's clamd, the real daemons from Debian,
 * started once for this file: GTUBE and EICAR, clean mail, the protocol
 * details, timeouts, and the fail-open / fail-closed policy with the daemons
 * stopped.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clamdScan, instreamFrames, parseClamdReply } from "../../src/filter/clamd-protocol.js";
import { createFilterPipeline } from "../../src/filter/index.js";
import { parseSpamdResponse, spamdScan } from "../../src/filter/spamd-protocol.js";
import type { Envelope, Verdict } from "../../src/filter/types.js";
import {
  type Daemon,
  EICAR,
  filterConfig,
  freePort,
  message,
  silentLogger,
  startClamd,
  startSilentServer,
  startSpamd,
} from "./daemons.js";

const GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";
const env: Envelope = {
  helo: "mail.sender.test",
  mailFrom: "a@sender.test",
  rcptTo: ["u@campus.example.edu"],
};
const deps = {
  logger: silentLogger,
  localDomains: ["campus.example.edu"],
  hostname: "mx1.campus.example.edu",
};
const noAuth = { dkim: { enabled: false }, dmarc: { enabled: false }, arc: { enabled: false } };

let spamd: Daemon;
let clamd: Daemon;

beforeAll(async () => {
  // Started side by side; whichever started is stopped in afterAll even if the other failed.
  const [s, c] = await Promise.allSettled([startSpamd(), startClamd({ streamMaxLength: "1M" })]);
  if (s.status === "fulfilled") spamd = s.value;
  if (c.status === "fulfilled") clamd = c.value;
  if (s.status === "rejected") throw s.reason;
  if (c.status === "rejected") throw c.reason;
}, 120_000);
afterAll(async () => {
  await Promise.all([spamd?.stop(), clamd?.stop()]);
});

function pipeline(section: Record<string, unknown> = {}) {
  return createFilterPipeline(
    filterConfig({
      spamd: { host: "127.0.0.1", port: spamd.port, timeoutMs: 30_000 },
      clamd: { host: "127.0.0.1", port: clamd.port, timeoutMs: 30_000 },
      ...noAuth,
      ...section,
    }),
    deps,
  );
}

async function scan(msg: Buffer, section: Record<string, unknown> = {}): Promise<Verdict> {
  const tx = pipeline(section).transaction();
  await tx.onConnect({ remoteAddress: "192.0.2.100", remotePort: 40100 });
  return tx.onData(msg, env);
}

const normal = () =>
  message(
    [
      "From: Alice <alice@sender.test>",
      "To: u@campus.example.edu",
      "Subject: Minutes of Tuesday's meeting",
      "Date: Sun, 29 Nov 2026 05:00:00 +0000",
      "Message-ID: <minutes-1@sender.test>",
    ],
    "Hi all,\n\nthe minutes are below. We agreed to move the lab meeting to Thursday.\n\nAlice\n",
  );

function withAttachment(content: string): Buffer {
  const b64 = Buffer.from(content).toString("base64");
  return message(
    [
      "From: a@sender.test",
      "Subject: document",
      "MIME-Version: 1.0",
      'Content-Type: multipart/mixed; boundary="zz"',
    ],
    `--zz\nContent-Type: text/plain\n\nsee attached\n--zz\nContent-Type: application/octet-stream; name="doc.bin"\nContent-Transfer-Encoding: base64\nContent-Disposition: attachment; filename="doc.bin"\n\n${b64}\n--zz--\n`,
  );
}

describe("spamd (SPAMC/1.5)", () => {
  it("parses responses and refuses error statuses", () => {
    const ok = parseSpamdResponse(
      Buffer.from("SPAMD/1.1 0 EX_OK\r\nContent-length: 11\r\nSpam: True ; 1000.0 / 5.0\r\n\r\nGTUBE,OTHER"),
      "SYMBOLS",
    );
    expect(ok).toEqual({ isSpam: true, score: 1000, threshold: 5, symbols: ["GTUBE", "OTHER"] });
    expect(
      parseSpamdResponse(Buffer.from("SPAMD/1.1 0 EX_OK\r\nSpam: False ; -1.5 / 5.0\r\n\r\n"), "CHECK"),
    ).toMatchObject({
      isSpam: false,
      score: -1.5,
    });
    expect(() => parseSpamdResponse(Buffer.from("SPAMD/1.0 76 Bad header line: x\r\n"), "CHECK")).toThrow(
      /spamd: 76 Bad header line/,
    );
    expect(() => parseSpamdResponse(Buffer.from("HTTP/1.0 200 OK\r\n"), "CHECK")).toThrow(
      /unexpected response/,
    );
  });

  it("GTUBE scores ~1000 and the message is refused 550 5.7.1 as spam", async () => {
    const v = await scan(message(["From: a@sender.test", "Subject: test"], `${GTUBE}\n`));
    const r = v.results.find((x) => x.check === "spamd");
    expect(r?.outcome).toBe("fail");
    expect(r?.score).toBeGreaterThanOrEqual(1000);
    expect(r?.detail).toMatch(/tests=.*GTUBE/);
    expect(v).toMatchObject({ action: "reject", code: 550, enhanced: "5.7.1", decidedBy: "spamRejectScore" });
    expect(v.message).toMatch(/^Message content rejected as spam \(score 1\d{3}\.\d\)$/);
  });

  it("with a high reject score GTUBE is tagged for Sieve instead", async () => {
    const v = await scan(message(["From: a@sender.test", "Subject: test"], `${GTUBE}\n`), {
      spamRejectScore: 5000,
    });
    expect(v.action).toBe("tag");
    expect(v.addHeaders).toContainEqual(["X-Spam-Flag", "YES"]);
    const status = v.addHeaders.find(([n]) => n === "X-Spam-Status")?.[1] ?? "";
    expect(status).toMatch(/^Yes, score=1\d{3}\.\d required=5\.0 tests=GTUBE/);
    expect(v.addHeaders.find(([n]) => n === "X-Spam-Score")?.[1]).toMatch(/^1\d{3}\.\d$/);
  });

  it("an ordinary message scores low and is accepted with X-Spam-Status: No", async () => {
    const v = await scan(normal());
    const r = v.results.find((x) => x.check === "spamd");
    expect(r?.outcome).toBe("pass");
    expect(r?.score).toBeLessThan(5);
    expect(v.action).toBe("accept");
    expect(v.addHeaders.find(([n]) => n === "X-Spam-Status")?.[1]).toMatch(
      /^No, score=-?\d+\.\d required=5\.0/,
    );
    expect(v.addHeaders.find(([n]) => n === "X-Spam-Flag")).toBeUndefined();
  });

  it("CHECK and REPORT commands work against the real spamd", async () => {
    const target = { host: "127.0.0.1", port: spamd.port, timeoutMs: 30_000 };
    const gtube = message(["Subject: t"], `${GTUBE}\n`);
    expect((await spamdScan(target, gtube, "CHECK")).isSpam).toBe(true);
    const report = await spamdScan(target, gtube, "REPORT");
    expect(report.report).toMatch(/GTUBE/);
  });

  it("a message over spamd.maxBytes is not sent (skip)", async () => {
    const v = await scan(normal(), { spamd: { host: "127.0.0.1", port: spamd.port, maxBytes: 100 } });
    expect(v.results.find((x) => x.check === "spamd")).toMatchObject({ outcome: "skip" });
  });
});

describe("clamd (INSTREAM)", () => {
  it("frames the stream with 4-byte big-endian lengths and a zero terminator", () => {
    const frames = instreamFrames(Buffer.alloc(10, 1), 4);
    expect(frames[0]!.toString()).toBe("zINSTREAM\0");
    expect(frames.slice(1).map((f) => f.toString("hex"))).toEqual([
      "00000004",
      "01010101",
      "00000004",
      "01010101",
      "00000002",
      "0101",
      "00000000",
    ]);
    expect(parseClamdReply("stream: Eicar-Test-Signature FOUND\0")).toEqual({
      kind: "infected",
      signature: "Eicar-Test-Signature",
    });
    expect(parseClamdReply("INSTREAM size limit exceeded. ERROR\0")).toEqual({ kind: "too-large" });
  });

  it("EICAR in a base64 attachment is found by clamd and refused 554 5.7.1 naming it", async () => {
    const v = await scan(withAttachment(EICAR));
    expect(v).toMatchObject({ action: "reject", code: 554, enhanced: "5.7.1", decidedBy: "clamd" });
    expect(v.message).toMatch(/^Message rejected: virus found \(Eicar-Test-Signature(\.UNOFFICIAL)?\)$/);
  });

  it("a clean attachment passes", async () => {
    const v = await scan(withAttachment("just a harmless document"));
    expect(v.results.find((x) => x.check === "clamd")).toMatchObject({ outcome: "pass" });
    expect(v.action).toBe("accept");
  });

  it("over StreamMaxLength (1M here): clamd's size-limit reply is read and recorded as skip", async () => {
    const big = withAttachment(`${"lorem ipsum dolor sit amet ".repeat(80_000)}`);
    expect(big.length).toBeGreaterThan(2_000_000);
    const r = await clamdScan({ host: "127.0.0.1", port: clamd.port, timeoutMs: 30_000 }, big);
    expect(r).toEqual({ kind: "too-large" });
    const v = await scan(big, { spamd: undefined });
    expect(v.results.find((x) => x.check === "clamd")).toMatchObject({
      outcome: "skip",
      detail: /StreamMaxLength/,
    });
    expect(v.action).toBe("accept");
  });

  it("outbound mail from trusted clients is scanned too", async () => {
    const tx = pipeline().transaction();
    await tx.onConnect({ remoteAddress: "10.0.0.5", remotePort: 1, trustedNetwork: true });
    const v = await tx.onData(withAttachment(EICAR), env);
    expect(v).toMatchObject({ action: "reject", decidedBy: "clamd" });
    expect(v.results.find((x) => x.check === "spamd")?.outcome).toBe("skip");
  });
});

describe("record(): one structured object per verdict", () => {
  it("has client, helo, sender, recipients, each check's result and score, and what decided", async () => {
    const tx = pipeline().transaction();
    await tx.onConnect({
      remoteAddress: "192.0.2.101",
      remotePort: 40200,
      clientHostname: "mail.sender.test",
    });
    await tx.onHelo("mail.sender.test");
    await tx.onMailFrom("a@sender.test");
    await tx.onRcptTo("u@campus.example.edu");
    await tx.onData(message(["From: a@sender.test", "Subject: test"], `${GTUBE}\n`), env);
    const rec = tx.record();
    expect(rec).toMatchObject({
      client: { ip: "192.0.2.101", port: 40200, hostname: "mail.sender.test" },
      helo: "mail.sender.test",
      sender: "a@sender.test",
      recipients: ["u@campus.example.edu"],
      stage: "data",
      action: "reject",
      code: 550,
      decidedBy: "spamRejectScore",
    });
    const checks = rec.checks as Array<{ check: string; outcome: string; score?: number; ms?: number }>;
    expect(checks.map((c) => c.check)).toEqual([
      "early-talker",
      "rate",
      "client-access",
      "dnsbl",
      "helo",
      "helo-access",
      "sender-access",
      "spf",
      "mime-bomb",
      "header-checks",
      "mime-header-checks",
      "body-checks",
      "clamd",
      "spamd",
      "dkim",
      "dmarc",
      "arc",
    ]);
    expect(checks.find((c) => c.check === "spamd")?.score).toBeGreaterThanOrEqual(1000);
    expect(typeof checks.find((c) => c.check === "clamd")?.ms).toBe("number");
    expect(JSON.parse(JSON.stringify(rec))).toEqual(rec); // plain data, ready for pino and the statistics
  });

  it("reset() starts the next message on the same connection with the connection's results kept", async () => {
    const tx = pipeline().transaction();
    await tx.onConnect({ remoteAddress: "192.0.2.102", remotePort: 40300 });
    await tx.onHelo("mail.sender.test");
    await tx.onMailFrom("a@sender.test");
    await tx.onData(normal(), env);
    tx.reset?.();
    await tx.onMailFrom("b@sender.test");
    const rec = tx.record();
    expect(rec.sender).toBe("b@sender.test");
    expect((rec.checks as Array<{ check: string }>).map((c) => c.check)).toEqual([
      "early-talker",
      "rate",
      "client-access",
      "dnsbl",
      "helo",
      "helo-access",
      "sender-access",
      "spf",
    ]);
  });
});

describe("scanner failure policy", () => {
  it("a scanner that never answers times out into the policy", async () => {
    const silent = await startSilentServer();
    try {
      const started = Date.now();
      const v = await scan(normal(), {
        spamd: { host: "127.0.0.1", port: silent.port, timeoutMs: 300 },
        clamd: { host: "127.0.0.1", port: silent.port, timeoutMs: 300 },
      });
      expect(Date.now() - started).toBeLessThan(3000);
      expect(v).toMatchObject({ action: "tempfail", code: 451, enhanced: "4.7.1" });
      expect(v.results.find((x) => x.check === "spamd")?.detail).toBe("spamd: no answer in 300 ms");
      expect(v.results.find((x) => x.check === "clamd")?.detail).toBe("clamd: no answer in 300 ms");
    } finally {
      await silent.stop();
    }
  });

  it("with the real daemons stopped: closed → 451 4.7.1, open → accepted with the error recorded", async () => {
    const ports = { spamd: spamd.port, clamd: clamd.port };
    await Promise.all([spamd.stop(), clamd.stop()]);
    const section = (policy: "open" | "closed") => ({
      onScannerFailure: policy,
      spamd: { host: "127.0.0.1", port: ports.spamd },
      clamd: { host: "127.0.0.1", port: ports.clamd },
    });
    const closed = await scan(withAttachment(EICAR), section("closed"));
    expect(closed).toMatchObject({
      action: "tempfail",
      code: 451,
      enhanced: "4.7.1",
      message: "Content scanner unavailable, try again later",
      decidedBy: "onScannerFailure=closed (clamd)",
    });
    const open = await scan(normal(), section("open"));
    expect(open.action).toBe("accept");
    expect(open.results.find((x) => x.check === "clamd")).toMatchObject({
      outcome: "error",
      detail: "clamd: ECONNREFUSED",
    });
    expect(open.results.find((x) => x.check === "spamd")).toMatchObject({
      outcome: "error",
      detail: "spamd: ECONNREFUSED",
    });
  });

  it("a port nobody listens on is the same as a stopped daemon", async () => {
    const port = await freePort();
    const v = await scan(normal(), { spamd: { host: "127.0.0.1", port }, clamd: undefined });
    expect(v).toMatchObject({ action: "tempfail", decidedBy: "onScannerFailure=closed (spamd)" });
  });
});
