/**
 * The MX role against a real slapd, with swaks and python3 smtplib as
 * clients: recipients checked in the directory (aliases, forwarding,
 * mailHost shards), LMTP delivery through the queue, ESMTP features, the
 * trace header, and never a false 550 when the directory is down.
 */
import { mkdtemp } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeConfig, python, type Running, startService, startWorld, swaks, type World } from "./harness.js";

let world: World;
let smtp: Running;

beforeAll(async () => {
  world = await startWorld();
  const queueDir = await mkdtemp(join(world.dir, "queue-"));
  smtp = await startService(world, makeConfig({ queueDir, lmtpPort: world.lmtp.port }));
});

afterAll(async () => {
  await smtp?.service.drain(1000);
  await world?.stop();
});

const mx = (to: string, extra: string[] = []) =>
  swaks(["--server", "127.0.0.1", "--port", String(smtp.mx), "--helo", "client.test", "--to", to, ...extra]);

describe("MX role", () => {
  it("advertises the ESMTP extensions and no AUTH", async () => {
    const r = await mx("alice@example.org", ["--quit-after", "EHLO"]);
    for (const ext of [
      "PIPELINING",
      "8BITMIME",
      "SMTPUTF8",
      "ENHANCEDSTATUSCODES",
      "DSN",
      "STARTTLS",
      "SIZE 1048576",
    ]) {
      expect(r.output).toMatch(new RegExp(`<-  250[- ]${ext}\\r?\\n`));
    }
    expect(r.output).not.toMatch(/AUTH/);
    expect(r.output).not.toMatch(/REQUIRETLS/);
  });

  it("accepts for a local account, queues durably and delivers by LMTP with a Received header", async () => {
    const before = world.lmtp.messages.length;
    const r = await mx("alice@example.org", [
      "--from",
      "sender@remote.test",
      "--header",
      "Subject: hello alice",
    ]);
    expect(r.code).toBe(0);
    const queued = r.output.match(/250 2\.0\.0 Ok: queued as (\S+)/);
    expect(queued).not.toBeNull();
    const got = await world.lmtp.waitFor(before + 1);
    const msg = got[before];
    expect(msg?.to).toEqual(["alice@example.org"]);
    expect(msg?.from).toBe("sender@remote.test");
    const text = msg?.data.toString() ?? "";
    expect(text).toMatch(
      new RegExp(
        `^Received: from client\\.test \\(\\[127\\.0\\.0\\.1\\]\\)\\r\\n\\tby mx\\.example\\.org \\(mailinfra\\)\\r\\n\\twith ESMTP id ${queued?.[1]}\\r\\n\\tfor <alice@example\\.org>;`,
      ),
    );
    expect(text).toContain("Subject: hello alice");
  });

  it("carries 8-bit bodies and UTF-8 addresses (8BITMIME, SMTPUTF8) unchanged", async () => {
    const before = world.lmtp.messages.length;
    const out = await python(
      `
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), local_hostname="py.client.test")
body = "Subject: Grüße\\r\\nContent-Type: text/plain; charset=utf-8\\r\\nContent-Transfer-Encoding: 8bit\\r\\n\\r\\nÄrger über Öl\\r\\n".encode("utf-8")
s.ehlo()
print(s.sendmail("jörg@bücher.example", ["alice@example.org"], body, mail_options=["SMTPUTF8", "BODY=8BITMIME"]))
s.quit()
`,
      [String(smtp.mx)],
    );
    expect(out.trim()).toBe("{}");
    const got = await world.lmtp.waitFor(before + 1);
    expect(got[before]?.from).toBe("jörg@bücher.example");
    expect(got[before]?.data.toString("utf8")).toContain("Ärger über Öl\r\n");
    expect(got[before]?.data.toString()).toMatch(/with UTF8ESMTP id /);
  });

  it("answers 550 5.1.1 for an unknown recipient", async () => {
    const r = await mx("nobody@example.org");
    expect(r.code).not.toBe(0);
    expect(r.output).toMatch(
      /<\*\* 550 5\.1\.1 <nobody@example\.org>: Recipient address rejected: User unknown/,
    );
  });

  it("accepts aliases case-insensitively (mailLocalAddress)", async () => {
    const before = world.lmtp.messages.length;
    const r = await mx("a.liddell@EXAMPLE.org");
    expect(r.code).toBe(0);
    const got = await world.lmtp.waitFor(before + 1);
    expect(got[before]?.to[0]?.toLowerCase()).toBe("a.liddell@example.org");
  });

  it("routes by mailHost to the account's store", async () => {
    const before = world.lmtp2.messages.length;
    const r = await mx("dave@example.org");
    expect(r.code).toBe(0);
    const got = await world.lmtp2.waitFor(before + 1);
    expect(got[before]?.to).toEqual(["dave@example.org"]);
  });

  it("forwards through mailRoutingAddress to a local account", async () => {
    const before = world.lmtp.messages.length;
    const r = await mx("erin@example.org");
    expect(r.code).toBe(0);
    const got = await world.lmtp.waitFor(before + 1);
    expect(got[before]?.to).toEqual(["alice@example.org"]);
  });

  it("takes several recipients in one transaction with python smtplib, one LMTP copy per store", async () => {
    const before = world.lmtp.messages.length;
    const out = await python(
      `
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), local_hostname="py.client.test")
refused = s.sendmail("py@remote.test", ["alice@example.org", "bob@example.org", "ghost@example.org"],
    b"Subject: multi\\r\\n\\r\\nbody\\r\\n")
print(sorted(refused.items()))
s.quit()
`,
      [String(smtp.mx)],
    );
    expect(out).toContain("ghost@example.org");
    expect(out).toContain("550");
    const got = await world.lmtp.waitFor(before + 1);
    expect(got[before]?.to.sort()).toEqual(["alice@example.org", "bob@example.org"]);
  });

  it("accepts the domainless postmaster (RFC 5321 §4.1.1.3) only if the directory knows postmaster@", async () => {
    const r = await mx("postmaster");
    // no postmaster account in this directory: a clean 550, not a crash or a relay
    expect(r.output).toMatch(/<\*\* 550 5\.1\.1 <postmaster@example\.org>/);
  });

  it("counts connections, messages and deliveries for Prometheus", async () => {
    const text = await smtp.metrics.metrics();
    expect(text).toMatch(/mailinfra_smtp_connections_total\{listener="mx"\} [1-9]/);
    expect(text).toMatch(/mailinfra_smtp_messages_total\{listener="mx",result="queued"\} [1-9]/);
    expect(text).toMatch(/mailinfra_queue_deliveries_total\{transport="lmtp",status="delivered"\} [1-9]/);
    expect(text).toMatch(/mailinfra_queue_messages \d+/);
  });

  it("answers 451 4.4.3, never 550, while the directory is unreachable", async () => {
    await world.slapd.halt();
    try {
      const r = await mx("alice@example.org");
      expect(r.output).toMatch(/<\*\* 451 4\.4\.3 /);
      expect(r.output).not.toMatch(/ 550 /);
      const unknown = await mx("nobody@example.org");
      expect(unknown.output).toMatch(/<\*\* 451 4\.4\.3 /);
    } finally {
      await world.slapd.resume();
    }
    const again = await mx("alice@example.org");
    expect(again.code).toBe(0);
  });
});
