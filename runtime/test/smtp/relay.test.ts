/**
 * Never an open relay. The classic tricks against the MX and the relay's
 * port 25 (percent hack, bang paths, quoted local parts, source routes,
 * address literals, unknown domains, trusted-network spoofing through HELO
 * and XCLIENT); the routing syntaxes also from the clients that may relay
 * (trusted networks, authenticated users), each refused with its own reply
 * and nothing queued for the remote host; and submission: STARTTLS before
 * AUTH, the user's own addresses only, AUTH failures throttled per client,
 * Message-ID and Date added when missing.
 */
import { mkdtemp, readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeConfig, python, type Running, startService, startWorld, swaks, type World } from "./harness.js";

let world: World;
let smtp: Running;
let queueDir: string;

beforeAll(async () => {
  world = await startWorld();
  queueDir = await mkdtemp(join(world.dir, "queue-"));
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
    [
      "quoted local part",
      '"victim@remote.test"@example.org',
      /<\*\* 501 5\.1\.3 Error: Bad recipient address syntax/,
    ],
    [
      "quoted local part with percent",
      '"victim%remote.test"@example.org',
      /<\*\* 550 5\.7\.1 .*routing syntax/,
    ],
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

/**
 * The routing syntaxes from clients that may relay: a trusted network on the
 * relay's port 25 and an authenticated user on 587. Each trick goes beside a
 * plain local recipient in one transaction carrying a marker, so the message
 * is queued and its envelope shows which recipients were taken.
 */
describe("routing syntax from clients that may relay (trusted port 25, 587 after AUTH)", () => {
  const ROUTING = (rcpt: string) =>
    `550 5.7.1 <${rcpt}>: Relay access denied: routing syntax (%, !, quotes) not accepted`;
  const tricks: Array<[string, string, string]> = [
    // Three '@': smtp-server's own grammar check refuses it before our code sees it.
    [
      "quoted local part",
      '"victim@remote.test"@example.org',
      "501 5.1.3 Error: Bad recipient address syntax",
    ],
    [
      "quoted local part with percent",
      '"victim%remote.test"@example.org',
      ROUTING('"victim%remote.test"@example.org'),
    ],
    ["percent hack", "victim%remote.test@example.org", ROUTING("victim%remote.test@example.org")],
    ["bang path", "remote.test!victim@example.org", ROUTING("remote.test!victim@example.org")],
    ["quoted bang path", '"remote.test!victim"@example.org', ROUTING('"remote.test!victim"@example.org')],
  ];

  interface Attempt {
    rcpt: string;
    reply: string;
    data: string;
  }

  /** One session per recipient: MAIL, RCPT <trick>, RCPT alice, DATA with the marker. */
  const attempt = async (mode: "trusted" | "auth", rcpts: string[], marker: string): Promise<Attempt[]> => {
    const out = await python(
      `
import smtplib, ssl, sys, os, json
mode, marker = sys.argv[2], sys.argv[4]
for rcpt in json.loads(sys.argv[3]):
    if mode == "trusted":
        s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), local_hostname="lists.example.org", source_address=("127.0.0.2", 0))
        s.ehlo()
        sender = "lists@example.org"
    else:
        s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), local_hostname="client.test")
        s.starttls(context=ssl._create_unverified_context())
        s.login("alice", os.environ["PW"])
        sender = "alice@example.org"
    assert s.docmd("MAIL", "FROM:<" + sender + ">")[0] == 250
    # docmd, not rcpt(): smtplib would re-quote the address.
    code, text = s.docmd("RCPT", "TO:<" + rcpt + ">")
    assert s.docmd("RCPT", "TO:<alice@example.org>")[0] == 250
    dcode, dtext = s.data(("Subject: " + marker + "\\r\\nX-Trick: " + rcpt + "\\r\\n\\r\\nbody\\r\\n").encode())
    s.quit()
    print(json.dumps({"rcpt": rcpt, "reply": "%d %s" % (code, text.decode()), "data": "%d %s" % (dcode, dtext.decode())}))
`,
      [String(mode === "trusted" ? smtp.relay : smtp.submission), mode, JSON.stringify(rcpts), marker],
      { PW: "alice-pw-1" },
    );
    return out
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Attempt);
  };

  /** The envelope recipients of the queued message, from its queue file (msg/<id>, first line). */
  const queuedRecipients = async (data: string): Promise<string[]> => {
    const id = /queued as (\S+)/.exec(data)?.[1] ?? "";
    const head = (await readFile(join(queueDir, "msg", id), "utf8")).split("\n", 1)[0] ?? "";
    const envelope = JSON.parse(head) as { recipients: Array<{ address: string }> };
    return envelope.recipients.map((r) => r.address);
  };

  /** Recipients in any queue file that a trick could have produced (the victim's, a bang path). */
  const remoteInQueue = async (): Promise<string[]> => {
    const found: string[] = [];
    for (const id of await readdir(join(queueDir, "msg"))) {
      const head = (await readFile(join(queueDir, "msg", id), "utf8").catch(() => "")).split("\n", 1)[0];
      if (!head) continue;
      const envelope = JSON.parse(head) as { recipients: Array<{ address: string }> };
      found.push(...envelope.recipients.map((r) => r.address).filter((a) => /victim|remote\.test!/i.test(a)));
    }
    return found;
  };

  for (const mode of ["trusted", "auth"] as const) {
    it(`${mode === "trusted" ? "port 25 from 127.0.0.2" : "587 after AUTH"}: refuses ${tricks.map((t) => t[0]).join(", ")}`, async () => {
      // The store answers slowly, so each message is still in the queue when its envelope is read.
      world.lmtp.delayMs = 3000;
      try {
        const marker = `routing-${mode}`;
        const got = await attempt(
          mode,
          tricks.map((t) => t[1]),
          marker,
        );
        expect(got.map((a) => a.rcpt)).toEqual(tricks.map((t) => t[1]));
        for (const [i, [, , expected]] of tricks.entries()) {
          const a = got[i];
          expect(a?.reply).toBe(expected);
          // The transaction goes on with the plain local recipient only.
          expect(a?.data).toMatch(/^250 2\.0\.0 Ok: queued as /);
          expect(await queuedRecipients(a?.data ?? "")).toEqual(["alice@example.org"]);
        }
        expect(await remoteInQueue()).toEqual([]);
        // And the store gets each message for alice alone.
        const mine = () => world.lmtp.messages.filter((m) => m.data.includes(`Subject: ${marker}\r\n`));
        for (const deadline = Date.now() + 15_000; mine().length < tricks.length; ) {
          if (Date.now() > deadline) throw new Error(`${mine().length} of ${tricks.length} delivered`);
          await new Promise((r) => setTimeout(r, 50));
        }
        for (const m of mine()) expect(m.to).toEqual(["alice@example.org"]);
      } finally {
        world.lmtp.delayMs = 0;
      }
    });
  }

  it("source routes: the route is dropped (RFC 5321 §C), never followed, and refused from untrusted clients", async () => {
    world.lmtp.delayMs = 3000;
    try {
      for (const mode of ["trusted", "auth"] as const) {
        // The final address is local: delivered here, nothing for the host named in the route.
        const [local] = await attempt(mode, ["@remote.test:bob@example.org"], `route-local-${mode}`);
        expect(local?.reply).toBe("250 2.1.5 Accepted");
        expect(await queuedRecipients(local?.data ?? "")).toEqual(["bob@example.org", "alice@example.org"]);
        // The final address is remote: the client may relay there anyway; the route's host is not used.
        const [remote] = await attempt(
          mode,
          ["@relay.test:route-target@remote.test"],
          `route-remote-${mode}`,
        );
        expect(remote?.reply).toBe("250 2.1.5 Accepted");
        expect(await queuedRecipients(remote?.data ?? "")).toEqual([
          "route-target@remote.test",
          "alice@example.org",
        ]);
      }
    } finally {
      world.lmtp.delayMs = 0;
    }
    // From outside trustedNetworks (127.0.0.1) on the relay's port 25: the remote final address is refused.
    const r = await on(smtp.relay, "@example.org:victim@remote.test");
    expect(r.output).toMatch(/<\*\* 554 5\.7\.1 <victim@remote\.test>: Relay access denied/);
  });
});
