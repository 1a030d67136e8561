/**
 * Mail loops (RFC 5321 §6.3): a message with more Received fields than
 * smtp.hopCountLimit (default 50, Postfix's hopcount_limit) is refused at
 * DATA with 554 5.4.6 on every SMTP role — MX, relay for a trusted network,
 * submission after STARTTLS and AUTH; nothing is queued. LMTP:
 * hops-lmtp.test.ts. Client: python3's smtplib.
 */
import { mkdtemp, readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HOP_COUNT_LIMIT, receivedCount } from "../../src/queue/loop.js";
import { makeConfig, python, type Running, startService, startWorld, type World } from "../smtp/harness.js";

let world: World;
let smtp: Running;
/** The same service with smtp.hopCountLimit: 3. */
let strict: Running;
let queueDir: string;

beforeAll(async () => {
  world = await startWorld();
  queueDir = await mkdtemp(join(world.dir, "queue-"));
  smtp = await startService(world, makeConfig({ queueDir, lmtpPort: world.lmtp.port }));
  strict = await startService(
    world,
    makeConfig({ queueDir, lmtpPort: world.lmtp.port, smtp: { hopCountLimit: 3 } }),
  );
});

afterAll(async () => {
  await smtp?.service.drain(1000);
  await strict?.service.drain(1000);
  await world?.stop();
});

function message(hops: number, subject: string): string {
  const received = Array.from(
    { length: hops },
    (_, i) =>
      `Received: from hop${i}.example.net (hop${i}.example.net [192.0.2.${i % 250}])\r\n\tby hop${i + 1}.example.net with ESMTP id H${i};\r\n\tSun, 29 Nov 2026 10:00:00 +0000\r\n`,
  ).join("");
  return `${received}From: someone@example.net\r\nTo: alice@example.org\r\nSubject: ${subject}\r\n\r\nbody\r\n`;
}

type Role = "mx" | "relay" | "submission";

/** One message through smtplib; returns the DATA reply. */
async function smtpData(role: Role, body: string, service: Running = smtp): Promise<string> {
  const port = role === "mx" ? service.mx : role === "relay" ? service.relay : service.submission;
  return python(
    `
import smtplib, ssl, os, sys, json
a = json.loads(sys.argv[1])
src = ("127.0.0.2", 0) if a["role"] == "relay" else None
s = smtplib.SMTP("127.0.0.1", a["port"], source_address=src)
s.ehlo("client.test")
sender = "someone@example.net"
if a["role"] == "submission":
    s.starttls(context=ssl._create_unverified_context())
    s.ehlo("client.test")
    s.login("alice", os.environ["HOPS_PW"])
    sender = "alice@example.org"
code, msg = s.mail(sender)
assert code == 250, msg
code, msg = s.rcpt("alice@example.org")
assert code == 250, msg
code, msg = s.data(a["body"].encode())
print(code, msg.decode())
s.quit()
`,
    [JSON.stringify({ role, port, body })],
    { HOPS_PW: "alice-pw-1" },
  );
}

/** Queue files (msg/ and tmp/) that hold this subject. */
async function queued(subject: string): Promise<string[]> {
  const found: string[] = [];
  for (const sub of ["msg", "tmp"]) {
    for (const name of await readdir(join(queueDir, sub))) {
      const text = await readFile(join(queueDir, sub, name), "latin1").catch(() => "");
      if (text.includes(`Subject: ${subject}\r\n`)) found.push(`${sub}/${name}`);
    }
  }
  return found;
}

describe("hop count limit (RFC 5321 §6.3)", () => {
  it("counts only the top-level Received fields", () => {
    const inner = message(3, "inner");
    const outer = Buffer.from(`${message(2, "outer").replace("body\r\n", "")}${inner}`);
    expect(receivedCount(outer)).toBe(2);
    expect(HOP_COUNT_LIMIT).toBe(50);
  });

  it.each(["mx", "relay", "submission"] as const)(
    "%s: refuses more than 50 Received fields with 554 5.4.6 and queues nothing",
    async (role) => {
      const subject = `loop-${role}`;
      const reply = await smtpData(role, message(HOP_COUNT_LIMIT + 1, subject));
      expect(reply.trim()).toBe("554 5.4.6 Too many hops");
      expect(await queued(subject)).toEqual([]);
      await new Promise((r) => setTimeout(r, 300));
      expect(
        world.lmtp.messages.filter((m) => m.data.toString().includes(`Subject: ${subject}\r\n`)),
      ).toEqual([]);
    },
  );

  it("accepts exactly 50 Received fields and delivers the message with ours on top", async () => {
    const subject = "loop-at-limit";
    const reply = await smtpData("mx", message(HOP_COUNT_LIMIT, subject));
    expect(reply).toMatch(/^250 2\.0\.0 Ok: queued as /);
    const deadline = Date.now() + 15_000;
    let got = world.lmtp.messages.find((m) => m.data.toString().includes(`Subject: ${subject}\r\n`));
    while (!got && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      got = world.lmtp.messages.find((m) => m.data.toString().includes(`Subject: ${subject}\r\n`));
    }
    expect(got && receivedCount(got.data)).toBe(HOP_COUNT_LIMIT + 1);
  });

  it("takes its limit from smtp.hopCountLimit", async () => {
    expect((await smtpData("mx", message(4, "loop-strict-4"), strict)).trim()).toBe(
      "554 5.4.6 Too many hops",
    );
    expect(await smtpData("mx", message(3, "loop-strict-3"), strict)).toMatch(/^250 2\.0\.0 Ok: queued as /);
    expect(await queued("loop-strict-4")).toEqual([]);
  });
});
