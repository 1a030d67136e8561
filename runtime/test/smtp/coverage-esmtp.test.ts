/**
 * SMTP corners the other tests leave unasserted, against the real service,
 * slapd and dnsmasq:
 * - PIPELINING (RFC 2920) really pipelined: swaks --pipeline, and a raw
 *   socket sending MAIL, RCPT… and DATA in one write, with a refused RCPT in
 *   the middle of the group;
 * - SMTP AUTH while the directory is down: 454 4.7.0, never 535, and AUTH
 *   works again once it is back;
 * - a null MX (RFC 7505): a bounce with 5.1.10 and no connection attempt;
 * - MIME bombs sent end to end through SMTP (python3 smtplib): the configured
 *   limits answer 554 5.6.0 / 552 5.3.4 and nothing reaches the queue;
 * - AUTH logged with the user and never the password (PLAIN and LOGIN).
 */
import { spawn } from "node:child_process";
import { mkdtemp, readdir } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../src/log/index.js";
import { lineSink } from "../support/log-sink.js";
import {
  type Dnsmasq,
  freePort,
  makeConfig,
  python,
  type Running,
  type Sink,
  startDnsmasq,
  startService,
  startSink,
  startWorld,
  swaks,
  type World,
} from "./harness.js";

let world: World;
let dns: Dnsmasq;
let remote: Sink;
let smtp: Running;

beforeAll(async () => {
  world = await startWorld();
  const port = await freePort("127.0.0.3");
  remote = await startSink({ lmtp: false, host: "127.0.0.3", port });
  const dnsArgs = [
    // RFC 7505 §3: a single MX of preference 0 whose exchange is the root ("."):
    // RDATA = preference 0x0000, then the root name (one zero octet)
    "--dns-rr=nullmx.test,15,0000:00",
    // the domain still has an address: a sender that ignored the null MX would go there
    "--host-record=nullmx.test,127.0.0.3",
    "--host-record=plain.test,127.0.0.3",
    "--local=/nullmx.test/",
    "--local=/plain.test/",
  ];
  dns = await startDnsmasq(dnsArgs);
  const queueDir = await mkdtemp(join(world.dir, "queue-"));
  smtp = await startService(
    world,
    makeConfig({
      queueDir,
      lmtpPort: world.lmtp.port,
      queue: { dnsServers: [`127.0.0.1:${dns.port}`], remoteSmtpPort: port, connectTimeoutSeconds: 2 },
    }),
  );
});

afterAll(async () => {
  await smtp?.service.drain(1000);
  await remote?.close();
  await dns?.stop();
  await world?.stop();
});

async function waitFor<T>(find: () => T | undefined, what: string, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = find();
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * A python3 socket client: the greeting, EHLO, then each group in ONE
 * sendall(); after a group it reads one reply per command in it (multi-line
 * replies joined), and a body follows only after a 354. Prints JSON.
 */
const PIPELINE_CLIENT = `
import json, socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=15)
f = s.makefile("rb")
def reply():
    lines = []
    while True:
        line = f.readline().decode("latin-1")
        if not line:
            raise SystemExit("connection closed")
        lines.append(line.rstrip("\\r\\n"))
        if len(line) < 4 or line[3] != "-":
            return "\\n".join(lines)
out = {"greeting": reply()}
s.sendall(b"EHLO pipe.client.test\\r\\n")
out["ehlo"] = reply()
out["groups"] = []
for group, body in json.loads(sys.argv[2]):
    s.sendall(group.encode("latin-1"))  # one write: the whole group
    replies = [reply() for _ in range(group.count("\\r\\n"))]
    if body is not None and replies[-1].startswith("354"):
        s.sendall(body.encode("latin-1"))
        replies.append(reply())
    out["groups"].append(replies)
s.sendall(b"QUIT\\r\\n")
out["quit"] = reply()
print(json.dumps(out))
`;

describe("PIPELINING (RFC 2920)", () => {
  it("swaks --pipeline sends MAIL, RCPT and DATA together and the message is delivered", async () => {
    const before = world.lmtp.messages.length;
    const r = await swaks([
      "--server",
      "127.0.0.1",
      "--port",
      String(smtp.mx),
      "--helo",
      "pipe.client.test",
      "--from",
      "sender@remote.test",
      "--to",
      "alice@example.org,bob@example.org",
      "--pipeline",
      "--header",
      "Subject: pipelined by swaks",
    ]);
    expect(r.code).toBe(0);
    // the client side of the transcript: the whole group goes out before the first reply comes back
    const lines = r.output.split(/\r?\n/);
    const mail = lines.findIndex((l) => /^ -> MAIL FROM:/.test(l));
    const data = lines.findIndex((l) => /^ -> DATA$/.test(l));
    expect(mail).toBeGreaterThan(0);
    expect(lines.slice(mail, data + 1)).toEqual([
      " -> MAIL FROM:<sender@remote.test>",
      " -> RCPT TO:<alice@example.org>",
      " -> RCPT TO:<bob@example.org>",
      " -> DATA",
    ]);
    expect(lines.slice(data + 1, data + 5)).toEqual([
      expect.stringMatching(/^<- {2}250 /),
      expect.stringMatching(/^<- {2}250 /),
      expect.stringMatching(/^<- {2}250 /),
      expect.stringMatching(/^<- {2}354 /),
    ]);
    const got = await world.lmtp.waitFor(before + 1);
    const msg = got.slice(before).find((m) => m.data.toString().includes("Subject: pipelined by swaks"));
    expect(msg?.to.sort()).toEqual(["alice@example.org", "bob@example.org"]);
  });

  it("answers a group sent in one write in order, one reply per command, a refused RCPT alone", async () => {
    const before = world.lmtp.messages.length;
    const groups: Array<[string, string | null]> = [
      [
        "MAIL FROM:<sender@remote.test>\r\nRCPT TO:<alice@example.org>\r\nRCPT TO:<nobody@example.org>\r\nRCPT TO:<A.Liddell@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n",
        "Subject: pipelined group\r\n\r\nin one write\r\n.\r\n",
      ],
      // a refused MAIL: the RCPT and DATA behind it in the same write get 503, nothing is queued
      [
        "MAIL FROM:<bad address@@>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n",
        "Subject: must not pass\r\n\r\nx\r\n.\r\n",
      ],
      ["RSET\r\nNOOP\r\n", null],
    ];
    const out = JSON.parse(await python(PIPELINE_CLIENT, [String(smtp.mx), JSON.stringify(groups)])) as {
      greeting: string;
      ehlo: string;
      groups: string[][];
      quit: string;
    };
    expect(out.greeting).toMatch(/^220 /);
    expect(out.ehlo).toMatch(/^250-PIPELINING$/m);
    const [first, second, third] = out.groups;
    expect(first).toEqual([
      expect.stringMatching(/^250 /), // MAIL
      expect.stringMatching(/^250 /), // alice
      expect.stringMatching(/^550 5\.1\.1 /), // unknown
      expect.stringMatching(/^250 /), // alias of alice
      expect.stringMatching(/^250 /), // bob
      expect.stringMatching(/^354 /), // DATA
      expect.stringMatching(/^250 2\.0\.0 Ok: queued as /),
    ]);
    expect(second?.[0]).toMatch(/^5\d\d /);
    expect(second?.slice(1)).toEqual([expect.stringMatching(/^503 /), expect.stringMatching(/^503 /)]);
    expect(second).toHaveLength(3); // no 354, so the body was never sent
    expect(third).toEqual([expect.stringMatching(/^250 /), expect.stringMatching(/^250 /)]);
    expect(out.quit).toMatch(/^221 /);
    const got = await world.lmtp.waitFor(before + 1);
    const msg = got.slice(before).find((m) => m.data.toString().includes("Subject: pipelined group"));
    // the accepted recipients, the alias as the client wrote it; never the refused one
    expect(msg?.to.sort()).toEqual(["A.Liddell@example.org", "alice@example.org", "bob@example.org"]);
    await new Promise((r) => setTimeout(r, 300));
    expect(world.lmtp.messages.some((m) => m.data.toString().includes("must not pass"))).toBe(false);
  });
});

describe("a null MX (RFC 7505)", () => {
  it("bounces with 5.1.10 without connecting anywhere; the same host is reachable by A record", async () => {
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
        "bob",
        "--from",
        "bob@example.org",
        "--to",
        "someone@nullmx.test",
        "--header",
        "Subject: to-null-mx",
      ],
      "bob-pw-2",
    );
    const id = r.output.match(/queued as (\S+)/)?.[1];
    expect(id).toBeDefined();
    const dsn = await waitFor(
      () => world.lmtp.messages.find((m) => m.from === "" && m.data.toString().includes(id ?? "?")),
      "DSN for nullmx.test",
    );
    expect(dsn.to).toEqual(["bob@example.org"]);
    const text = dsn.data.toString();
    expect(text).toContain("Final-Recipient: rfc822; someone@nullmx.test");
    expect(text).toContain("Action: failed");
    expect(text).toContain("Status: 5.1.10");
    // RFC 7505 §4.1: no delivery attempt, so no connection to the domain's address
    expect(remote.maxConcurrent).toBe(0);
    expect(remote.messages).toHaveLength(0);

    // control: a domain with only an A record on the same host gets its mail (implicit MX)
    await swaks([
      "--server",
      "127.0.0.1",
      "--port",
      String(smtp.relay),
      "--local-interface",
      "127.0.0.2",
      "--from",
      "lists@example.org",
      "--to",
      "member@plain.test",
      "--header",
      "Subject: to-plain",
    ]);
    const got = await waitFor(
      () => remote.messages.find((m) => m.data.toString().includes("Subject: to-plain")),
      "delivery to plain.test",
    );
    expect(got.to).toEqual(["member@plain.test"]);
    expect(remote.messages.some((m) => m.to.includes("someone@nullmx.test"))).toBe(false);
  });
});

describe("SMTP AUTH while the directory is down", () => {
  const auth = (method: string, password: string) =>
    swaks(
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
        "alice@example.org",
        "--to",
        "friend@remote.test",
        "--quit-after",
        "AUTH",
      ],
      password,
    );

  it("answers 454 4.7.0 (try later), never 535, and AUTH works again when slapd is back", async () => {
    await world.slapd.halt();
    try {
      for (const method of ["PLAIN", "LOGIN"]) {
        const r = await auth(method, "alice-pw-1");
        expect(r.output).toMatch(/<~\* 454 4\.7\.0 /);
        expect(r.output).not.toMatch(/ 535 /);
      }
      // python3 smtplib sees the temporary code as well
      const py = await python(
        `
import smtplib, ssl, sys, os
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]))
s.starttls(context=ssl._create_unverified_context())
s.ehlo()
s.esmtp_features["auth"] = "PLAIN"
try:
    s.login("alice", os.environ["PW"])
    print("235")
except smtplib.SMTPAuthenticationError as e:
    print(e.smtp_code, e.smtp_error.decode())
s.close()
`,
        [String(smtp.submission)],
        { PW: "alice-pw-1" },
      );
      expect(py.trim()).toMatch(/^454 4\.7\.0 /);
    } finally {
      await world.slapd.resume();
    }
    const ok = await auth("PLAIN", "alice-pw-1");
    expect(ok.output).toMatch(/<~ {2}235 /);
    // and a wrong password is a real 535 again
    const wrong = await auth("PLAIN", "not-the-password");
    expect(wrong.output).toMatch(/<~\* 535 5\.7\.8 /);
  });
});

describe("MIME bombs through SMTP (python3 smtplib)", () => {
  let bombSmtp: Running;
  let bombQueue: string;

  beforeAll(async () => {
    bombQueue = await mkdtemp(join(world.dir, "queue-bomb-"));
    // nothing listens on this LMTP port: what is queued stays in msg/ where the test can see it
    const deadLmtp = await freePort();
    bombSmtp = await startService(
      world,
      makeConfig({
        queueDir: bombQueue,
        lmtpPort: deadLmtp,
        filter: {
          dnsServers: ["127.0.0.1:9"],
          rate: { maxConnectionsPerMinute: 0, maxConcurrent: 0 },
          helo: { enabled: false },
          spf: { enabled: false },
          dkim: { enabled: false },
          dmarc: { enabled: false },
          arc: { enabled: false },
          mimeBomb: { maxDepth: 12, maxParts: 200 },
        },
        queue: { retryInitialSeconds: 300, retryMaxSeconds: 600 },
      }),
    );
  });

  afterAll(async () => {
    await bombSmtp?.service.drain(1000);
  });

  it("refuses deep nesting with 554 5.6.0 and too many parts with 552 5.3.4, queues nothing, accepts mail below the limits", async () => {
    const script = `
import json, smtplib, sys
def nested(depth):
    head, tail = [], []
    for i in range(depth):
        head.append('Content-Type: multipart/mixed; boundary="b%d"\\r\\n\\r\\n--b%d\\r\\n' % (i, i))
        tail.append("\\r\\n--b%d--" % (depth - 1 - i))
    return ("From: a@remote.test\\r\\nSubject: nested %d\\r\\n" % depth + "".join(head) + "x" + "".join(tail) + "\\r\\n").encode()
def parts(n):
    return ('From: a@remote.test\\r\\nSubject: parts %d\\r\\nContent-Type: multipart/mixed; boundary="p"\\r\\n\\r\\n' % n
            + "--p\\r\\nContent-Type: text/plain\\r\\n\\r\\nx\\r\\n" * n + "--p--\\r\\n").encode()
out = []
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), local_hostname="bomber.test")
for msg in [nested(40), parts(5000), nested(8), parts(150)]:
    try:
        s.sendmail("a@remote.test", ["alice@example.org"], msg)
        out.append("250")
    except smtplib.SMTPDataError as e:
        out.append("%d %s" % (e.smtp_code, e.smtp_error.decode()))
    print(json.dumps(out), flush=True)
    sys.stdin.readline()  # the test looks at the queue between messages
s.quit()
`;
    // drive the script step by step: one message, then a look at the queue
    const child = spawn("python3", ["-c", script, String(bombSmtp.mx)], { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    const step = async (n: number): Promise<string[]> => {
      const deadline = Date.now() + 20_000;
      for (;;) {
        const lines = stdout.trim().split("\n").filter(Boolean);
        if (lines.length >= n) return JSON.parse(lines[n - 1]!) as string[];
        if (Date.now() > deadline) throw new Error(`no answer ${n}: ${stdout} ${stderr}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    const queued = async () => ({
      msg: await readdir(join(bombQueue, "msg")),
      tmp: await readdir(join(bombQueue, "tmp")),
    });
    try {
      let r = await step(1);
      expect(r[0]).toMatch(/^554 5\.6\.0 .*nested more than 12 deep/);
      expect(await queued()).toEqual({ msg: [], tmp: [] });
      child.stdin.write("\n");
      r = await step(2);
      expect(r[1]).toMatch(/^552 5\.3\.4 .*more than 200 MIME parts/);
      expect(await queued()).toEqual({ msg: [], tmp: [] });
      child.stdin.write("\n");
      // below both limits, in the same session: accepted and queued
      r = await step(3);
      expect(r[2]).toBe("250");
      expect((await queued()).msg).toHaveLength(1);
      child.stdin.write("\n");
      r = await step(4);
      expect(r[3]).toBe("250");
      expect((await queued()).msg).toHaveLength(2);
      child.stdin.write("\n");
    } finally {
      child.stdin.end();
      if (child.exitCode === null) await new Promise((r) => child.once("exit", r));
    }
    expect(stderr).toBe("");
    const text = (await bombSmtp.metrics.metrics()).toString();
    expect(text).toMatch(/mailinfra_smtp_messages_total\{listener="mx",result="queued"\} 2\b/);
  });
});

describe("SMTP logs never carry credentials", () => {
  it("logs AUTH successes and failures with the user only, at trace level, for PLAIN and LOGIN", async () => {
    const lines: string[] = [];
    const queueDir = await mkdtemp(join(world.dir, "queue-log-"));
    const logged = await startService(
      world,
      makeConfig({ queueDir, lmtpPort: world.lmtp.port }),
      {},
      createLogger({ level: "trace", destination: lineSink(lines) }),
    );
    const secrets = ["alice-pw-1", "Wrong-Guess-7731"];
    try {
      for (const [method, password] of [
        ["PLAIN", "alice-pw-1"],
        ["LOGIN", "alice-pw-1"],
        ["PLAIN", "Wrong-Guess-7731"],
        ["LOGIN", "Wrong-Guess-7731"],
      ] as const) {
        await swaks(
          [
            "--server",
            "127.0.0.1",
            "--port",
            String(logged.submission),
            "--tls",
            "--auth",
            method,
            "--auth-user",
            "alice",
            "--quit-after",
            "AUTH",
          ],
          password,
        );
      }
    } finally {
      await logged.service.drain(1000);
    }
    const text = lines.join("\n");
    // the events are there, with the user …
    expect(lines.filter((l) => /"auth ok"/.test(l) && /"alice"/.test(l))).toHaveLength(2);
    expect(lines.filter((l) => /"auth failed"/.test(l) && /"alice"/.test(l))).toHaveLength(2);
    // … and no password in any form a client sends it (plain, PLAIN's base64 blob, LOGIN's base64)
    for (const secret of secrets) {
      expect(text).not.toContain(secret);
      expect(text).not.toContain(Buffer.from(secret).toString("base64"));
      expect(text).not.toContain(Buffer.from(`\0alice\0${secret}`).toString("base64"));
    }
  });
});
