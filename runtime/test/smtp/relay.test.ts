/**
 * Never an open relay. The classic tricks against the MX and the relay's
 * port 25 (percent hack, bang paths, quoted local parts, source routes,
 * address literals, unknown domains, trusted-network spoofing through HELO
 * and XCLIENT), and submission: STARTTLS before AUTH, the user's own
 * addresses only, AUTH failures throttled per client, Message-ID and Date
 * added when missing.
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
  smtp = await startService(
    world,
    makeConfig({
      queueDir,
      lmtpPort: world.lmtp.port,
      smtp: { authFailuresBeforeDelay: 2, authFailuresBeforeBlock: 3 },
    }),
  );
});

afterAll(async () => {
  await smtp?.service.drain(1000);
  await world?.stop();
});

const on = (port: number, to: string, extra: string[] = []) =>
  swaks([
    "--server",
    "127.0.0.1",
    "--port",
    String(port),
    "--helo",
    "client.test",
    "--to",
    to,
    "--quit-after",
    "RCPT",
    ...extra,
  ]);

describe("open relay tricks on the MX", () => {
  const denied: Array<[string, string, RegExp]> = [
    ["unknown domain", "victim@remote.test", /<\*\* 554 5\.7\.1 <victim@remote\.test>: Relay access denied/],
    ["percent hack", "victim%remote.test@example.org", /<\*\* 550 5\.7\.1 .*routing syntax/],
    ["bang path", "remote.test!victim@example.org", /<\*\* 550 5\.7\.1 .*routing syntax/],
    ["quoted local part", '"victim@remote.test"@example.org', /<\*\* 5\d\d /],
    ["quoted local part with percent", '"victim%remote.test"@example.org', /<\*\* 5\d\d /],
    [
      "source route to a remote host",
      "@example.org:victim@remote.test",
      /<\*\* 554 5\.7\.1 <victim@remote\.test>: Relay access denied/,
    ],
    ["address literal", "victim@[127.0.0.1]", /<\*\* 554 5\.7\.1 /],
    ["remote domain with a trailing dot", "victim@remote.test.", /<\*\* 5\d\d /],
    ["local domain as a subdomain suffix", "victim@example.org.remote.test", /<\*\* 554 5\.7\.1 /],
  ];
  for (const [name, rcpt, expected] of denied) {
    it(`refuses ${name}: ${rcpt}`, async () => {
      const r = await on(smtp.mx, rcpt);
      expect(r.output).toMatch(expected);
      expect(r.output).not.toMatch(/-> RCPT TO[^\n]*\n<- {2}250/);
    });
  }

  it("refuses relaying even from the relay's trusted network address (the MX never relays)", async () => {
    const r = await on(smtp.mx, "victim@remote.test", ["--local-interface", "127.0.0.2"]);
    expect(r.output).toMatch(/<\*\* 554 5\.7\.1 /);
  });

  it("has no XCLIENT, XFORWARD or PROXY to spoof a trusted address", async () => {
    const out = await python(
      `
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), local_hostname="[127.0.0.2]")
s.ehlo()
print(s.docmd("XCLIENT", "ADDR=127.0.0.2 NAME=localhost"))
print(s.docmd("XFORWARD", "ADDR=127.0.0.2"))
print(s.docmd("MAIL", "FROM:<a@remote.test>"))
print(s.docmd("RCPT", "TO:<victim@remote.test>"))
`,
      [String(smtp.relay)],
    );
    expect(out).toMatch(/^\(5\d\d, b'5\.\d\.\d [^']*'\)\n\(5\d\d,/);
    expect(out).not.toMatch(/XCLIENT|XFORWARD/);
    expect(out).toMatch(/\(554, b'5\.7\.1 <victim@remote\.test>: Relay access denied'\)/);
  });
});

describe("relay role, port 25", () => {
  it("refuses to relay for a client outside trustedNetworks, whatever its HELO says", async () => {
    for (const helo of ["localhost", "[127.0.0.2]", "mx.example.org"]) {
      const r = await swaks([
        "--server",
        "127.0.0.1",
        "--port",
        String(smtp.relay),
        "--helo",
        helo,
        "--to",
        "victim@remote.test",
        "--quit-after",
        "RCPT",
      ]);
      expect(r.output).toMatch(/<\*\* 554 5\.7\.1 /);
    }
  });

  it("relays for a client inside trustedNetworks (127.0.0.2/32)", async () => {
    const r = await on(smtp.relay, "list-member@remote.test", ["--local-interface", "127.0.0.2"]);
    expect(r.output).toMatch(/-> RCPT TO:<list-member@remote\.test>\r?\n<- {2}250 /);
  });

  it("still takes local recipients from anyone, like an MX", async () => {
    const r = await on(smtp.relay, "alice@example.org");
    expect(r.output).toMatch(/-> RCPT TO:<alice@example\.org>\r?\n<- {2}250 /);
  });
});

describe("submission (587)", () => {
  it("offers AUTH only after STARTTLS and refuses mail before AUTH", async () => {
    const plain = await swaks([
      "--server",
      "127.0.0.1",
      "--port",
      String(smtp.submission),
      "--to",
      "victim@remote.test",
    ]);
    expect(plain.output).not.toMatch(/250[- ]AUTH/);
    expect(plain.output).toMatch(/<\*\* 530 5\.7\.0 Must issue a STARTTLS command first/);
    const auth = await swaks(
      [
        "--server",
        "127.0.0.1",
        "--port",
        String(smtp.submission),
        "--to",
        "x@remote.test",
        "--auth",
        "PLAIN",
        "--auth-user",
        "alice",
      ],
      "alice-pw-1",
    );
    expect(auth.output).not.toMatch(/235 /);
    expect(auth.output).toMatch(/Host did not advertise authentication/);
    const raw = await python(
      `
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]))
s.ehlo()
print(s.docmd("AUTH", "PLAIN AGFsaWNlAGFsaWNlLXB3LTE="))
`,
      [String(smtp.submission)],
    );
    expect(raw).toMatch(/^\(5\d\d,/);
    const tls = await swaks([
      "--server",
      "127.0.0.1",
      "--port",
      String(smtp.submission),
      "--tls",
      "--quit-after",
      "EHLO",
    ]);
    expect(tls.output).toMatch(/250[- ]AUTH PLAIN LOGIN/);
  });

  it("refuses relaying after STARTTLS without AUTH", async () => {
    const r = await swaks([
      "--server",
      "127.0.0.1",
      "--port",
      String(smtp.submission),
      "--tls",
      "--to",
      "victim@remote.test",
    ]);
    expect(r.output).toMatch(/<~\* 530 5\.7\.0 /);
  });

  it("lets an authenticated user send from their own addresses (mail and aliases) to anywhere", async () => {
    for (const [from, method] of [
      ["alice@example.org", "PLAIN"],
      ["A.Liddell@example.org", "LOGIN"],
    ] as const) {
      const r = await swaks(
        [
          "--server",
          "127.0.0.1",
          "--port",
          String(smtp.submission),
          "--tls",
          "--auth",
          method,
          "--auth-user",
          "alice",
          "--from",
          from,
          "--to",
          "friend@remote.test",
        ],
        "alice-pw-1",
      );
      expect(r.output).toMatch(/<~ {2}235 /);
      expect(r.output).toMatch(/<~ {2}250 2\.0\.0 Ok: queued as /);
    }
  });

  it("refuses a sender address the user does not own", async () => {
    const r = await swaks(
      [
        "--server",
        "127.0.0.1",
        "--port",
        String(smtp.submission),
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        "alice",
        "--from",
        "bob@example.org",
        "--to",
        "friend@remote.test",
      ],
      "alice-pw-1",
    );
    expect(r.output).toMatch(/<~\* 553 5\.7\.1 <bob@example\.org>: Sender address not owned by user alice/);
  });

  it("adds Message-ID and Date when the client left them out, and keeps them when present", async () => {
    const before = world.lmtp.messages.length;
    await python(
      `
import smtplib, ssl, sys, os
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]))
s.starttls(context=ssl._create_unverified_context())
s.login("bob", os.environ["PW"])
s.sendmail("bob@example.org", ["alice@example.org"], b"Subject: bare\\r\\n\\r\\nno date, no id\\r\\n")
s.sendmail("bob@example.org", ["alice@example.org"], b"Subject: full\\r\\nDate: Mon, 1 Jan 2024 00:00:00 +0000\\r\\nMessage-ID: <mine@client>\\r\\n\\r\\nbody\\r\\n")
s.quit()
`,
      [String(smtp.submission)],
      { PW: "bob-pw-2" },
    );
    const got = await world.lmtp.waitFor(before + 2);
    const bare = got[before]?.data.toString() ?? "";
    const full = got[before + 1]?.data.toString() ?? "";
    expect(bare).toMatch(/^Message-ID: <[0-9a-z]+-[0-9a-f]{12}@mx\.example\.org>\r$/m);
    expect(bare).toMatch(/^Date: \w{3}, \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d \+0000\r$/m);
    expect(bare).toMatch(/with ESMTPSA id /);
    expect(full.match(/^Message-ID:/gim)).toHaveLength(1);
    expect(full).toContain("Message-ID: <mine@client>");
    expect(full.match(/^Date:/gim)).toHaveLength(1);
  });

  it("does not add Message-ID or Date on the MX (not a submission)", async () => {
    const before = world.lmtp.messages.length;
    await python(
      `
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]))
s.sendmail("x@remote.test", ["alice@example.org"], b"Subject: bare\\r\\n\\r\\nbody\\r\\n")
s.quit()
`,
      [String(smtp.mx)],
    );
    const got = await world.lmtp.waitFor(before + 1);
    expect(got[before]?.data.toString()).not.toMatch(/^(Message-ID|Date):/im);
  });

  it("throttles AUTH failures per client address: delayed replies, then refused even with the right password", async () => {
    const out = await python(
      `
import smtplib, ssl, sys, os, time
def attempt(pw):
    s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), local_hostname="guesser.test", source_address=("127.0.0.3", 0))
    s.starttls(context=ssl._create_unverified_context())
    s.ehlo()
    s.esmtp_features["auth"] = "PLAIN"  # one method per attempt: smtplib would try LOGIN too
    t = time.time()
    try:
        s.login("bob", pw)
        r = "235"
    except smtplib.SMTPAuthenticationError as e:
        r = str(e.smtp_code) + " " + e.smtp_error.decode()
    except smtplib.SMTPException as e:
        r = "other " + str(e)
    el = time.time() - t
    s.close()
    return r, el
for pw in ["guess1", "guess2", "guess3", os.environ["PW"]]:
    r, el = attempt(pw)
    print("%s|%.2f" % (r, el))
`,
      [String(smtp.submission)],
      { PW: "bob-pw-2" },
    );
    const rows = out
      .trim()
      .split("\n")
      .map((l) => l.split("|"));
    expect(rows.map((r) => r[0]?.slice(0, 3))).toEqual(["535", "535", "535", "454"]);
    expect(Number(rows[0]?.[1])).toBeLessThan(0.9);
    expect(Number(rows[1]?.[1])).toBeGreaterThanOrEqual(0.9);
    expect(Number(rows[2]?.[1])).toBeGreaterThanOrEqual(1.9);
    expect(rows[3]?.[0]).toContain("4.7.0 Too many authentication failures");
    // another address is not affected
    const ok = await swaks(
      [
        "--server",
        "127.0.0.1",
        "--port",
        String(smtp.submission),
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        "bob",
        "--quit-after",
        "AUTH",
      ],
      "bob-pw-2",
    );
    expect(ok.output).toMatch(/<~ {2}235 /);
  });
});
