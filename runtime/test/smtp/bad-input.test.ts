/**
 * Bad input gets a clear 5xx/4xx and never a crash or a partial message in
 * the queue: bare LF/CR (and the SMTP smuggling built on them), NUL bytes,
 * over-long lines, header sections and command lines, SIZE violations,
 * too many recipients (clients that talk before the greeting: greeting.test.ts). Driven by
 * raw python3 sockets, since well-behaved clients cannot send most of this.
 */
import { mkdtemp, readdir } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { QueueStore } from "../../src/queue/store.js";
import { MAX_COMMAND_LINE_BYTES, MAX_HEADER_BYTES, MAX_TEXT_LINE_BYTES } from "../../src/smtp/limits.js";
import { makeConfig, type Running, rawSession, startService, startWorld, type World } from "./harness.js";

let world: World;
let smtp: Running;
let queueDir: string;

beforeAll(async () => {
  world = await startWorld();
  queueDir = await mkdtemp(join(world.dir, "queue-"));
  smtp = await startService(
    world,
    makeConfig({ queueDir, lmtpPort: world.lmtp.port, smtp: { maxRecipients: 3 } }),
  );
});

afterAll(async () => {
  await smtp?.service.drain(1000);
  await world?.stop();
});

const envelope = [
  "EHLO bad.client.test\r\n",
  "MAIL FROM:<x@remote.test>\r\n",
  "RCPT TO:<alice@example.org>\r\n",
  "DATA\r\n",
];
const ok = "Subject: fine\r\n\r\nfine\r\n.\r\n";

/** Sends one bad message, then a good one in the same session: the session must survive. */
async function refused(body: string): Promise<string> {
  const before = world.lmtp.messages.length;
  const out = await rawSession(smtp.mx, [...envelope, body, ...envelope.slice(1), ok, "QUIT\r\n"]);
  await world.lmtp.waitFor(before + 1);
  await new Promise((r) => setTimeout(r, 300));
  // only the good message arrived
  expect(world.lmtp.messages.length).toBe(before + 1);
  expect(world.lmtp.messages[before]?.data.toString()).toContain("Subject: fine");
  expect(out).toMatch(/250 2\.0\.0 Ok: queued as/);
  return out;
}

describe("message content", () => {
  it("refuses a bare LF (RFC 5321 §2.3.8)", async () => {
    expect(await refused("Subject: x\r\n\r\nline one\nline two\r\n.\r\n")).toMatch(
      /554 5\.6\.0 Bare LF in message/,
    );
  });

  it("refuses a bare CR", async () => {
    expect(await refused("Subject: x\r\n\r\nline one\rline two\r\n.\r\n")).toMatch(
      /554 5\.6\.0 Bare CR in message/,
    );
  });

  it("refuses SMTP smuggling (<LF>.<CR><LF> inside DATA) as one bad message, not two", async () => {
    const smuggled =
      "Subject: x\r\n\r\nhi\n.\r\nMAIL FROM:<evil@remote.test>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nSubject: smuggled\r\n\r\nx\r\n.\r\n";
    const out = await refused(smuggled);
    expect(out).toMatch(/554 5\.6\.0 Bare LF/);
    expect(world.lmtp.messages.some((m) => m.data.toString().includes("smuggled"))).toBe(false);
  });

  it("refuses NUL bytes", async () => {
    expect(await refused("Subject: x\r\n\r\nnul \u0000 here\r\n.\r\n")).toMatch(
      /554 5\.6\.0 Message contains NUL/,
    );
  });

  it(`refuses a line over ${MAX_TEXT_LINE_BYTES} octets (RFC 5321 §4.5.3.1.6)`, async () => {
    const out = await refused(`Subject: x\r\n\r\n${"a".repeat(MAX_TEXT_LINE_BYTES)}\r\n.\r\n`);
    expect(out).toMatch(/554 5\.6\.0 Line longer than 1000 octets/);
  });

  it("accepts a line of exactly 998 octets plus CRLF", async () => {
    const before = world.lmtp.messages.length;
    const out = await rawSession(smtp.mx, [
      ...envelope,
      `Subject: x\r\n\r\n${"b".repeat(998)}\r\n.\r\n`,
      "QUIT\r\n",
    ]);
    expect(out).toMatch(/250 2\.0\.0 Ok: queued as/);
    await world.lmtp.waitFor(before + 1);
  });

  it(`refuses a header section over ${MAX_HEADER_BYTES} octets`, async () => {
    const fields = Array.from(
      { length: Math.ceil(MAX_HEADER_BYTES / 900) + 5 },
      (_, i) => `X-Pad-${i}: ${"p".repeat(880)}\r\n`,
    );
    const out = await refused(`${fields.join("")}Subject: x\r\n\r\nbody\r\n.\r\n`);
    expect(out).toMatch(/552 5\.3\.4 Header section larger than/);
  });

  it("refuses a declared SIZE over the limit at MAIL FROM, and an actual one after DATA", async () => {
    const declared = await rawSession(smtp.mx, [
      "EHLO c.test\r\n",
      "MAIL FROM:<x@remote.test> SIZE=2000000\r\n",
      "QUIT\r\n",
    ]);
    expect(declared).toMatch(/552 5\.3\.4 /);
    const big = `Subject: big\r\n\r\n${`${"z".repeat(900)}\r\n`.repeat(1300)}.\r\n`;
    expect(await refused(big)).toMatch(/552 5\.\d\.\d .*(size|Size)/);
  });
});

describe("session", () => {
  it(`refuses a command line over ${MAX_COMMAND_LINE_BYTES} octets and stays up`, async () => {
    const out = await rawSession(smtp.mx, [`EHLO ${"h".repeat(MAX_COMMAND_LINE_BYTES + 100)}\r\n`]);
    expect(out).toMatch(/^(421 4\.4\.2|5\d\d \d\.\d\.\d) .*too long/im);
    const after = await rawSession(smtp.mx, ["EHLO fine.test\r\n", "QUIT\r\n"]);
    expect(after).toMatch(/250-mx\.example\.org/);
  });

  it("refuses the fourth recipient with 452 (smtp.maxRecipients = 3)", async () => {
    const out = await rawSession(smtp.mx, [
      "EHLO c.test\r\n",
      "MAIL FROM:<x@remote.test>\r\n",
      "RCPT TO:<alice@example.org>\r\n",
      "RCPT TO:<bob@example.org>\r\n",
      "RCPT TO:<dave@example.org>\r\n",
      "RCPT TO:<erin@example.org>\r\n",
      "QUIT\r\n",
    ]);
    expect(out.match(/^250 2\.1\.5/gm)).toHaveLength(3);
    expect(out).toMatch(/^452 4\.\d\.\d .*too many recipients/im);
  });

  it("ignores pipelined garbage after a rejected DATA without crashing", async () => {
    const out = await rawSession(smtp.mx, [
      "EHLO c.test\r\n",
      "DATA\r\n",
      "\u0000\u0001\u00ff garbage\r\n",
      "QUIT\r\n",
    ]);
    expect(out).toMatch(/^503 /m);
    const after = await rawSession(smtp.mx, ["EHLO fine.test\r\n"]);
    expect(after).toMatch(/250-mx\.example\.org/);
  });
});

describe("the queue after all that", () => {
  it("holds no partial message: no temp files, no message without its envelope", async () => {
    expect(await readdir(join(queueDir, "tmp"))).toEqual([]);
    const store = new QueueStore(queueDir);
    // every committed queue file is whole: envelope line and the message after it
    for (const id of await store.ids()) {
      const loaded = await store.loadWithMessage(id);
      expect(loaded?.envelope.id).toBe(id);
      expect(loaded?.message.length).toBe(loaded?.envelope.size);
    }
    // and the refused messages left nothing: only the good ones were ever queued
    for (const name of await readdir(join(queueDir, "msg"))) expect(name).toMatch(/^[0-9a-z]+-[0-9a-f]{12}$/);
  });
});
