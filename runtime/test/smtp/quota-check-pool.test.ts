/**
 * smtp/quota-check.ts against an LMTP store stand-in (smtp-server in LMTP
 * mode, counting sessions and commands): probes share one kept connection
 * with RSET between them, a connection the store closed is replaced, SIZE is
 * passed on (RFC 1870), only "552 5.2.2" at RCPT means full, and only "full"
 * is cached — for that SIZE and larger.
 */
import pino from "pino";
import { SMTPServer } from "smtp-server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { announcedSize } from "../../src/lmtp/rcpt-quota.js";
import { meansFull, QuotaCheck } from "../../src/smtp/quota-check.js";

let server: SMTPServer;
let port: number;
const seen = { connections: 0, mails: [] as string[], rcpts: [] as string[] };
const checks: QuotaCheck[] = [];

const fail = (code: number, text: string) => Object.assign(new Error(text), { responseCode: code });

beforeAll(async () => {
  server = new SMTPServer({
    lmtp: true,
    authOptional: true,
    disabledCommands: ["AUTH", "STARTTLS"],
    logger: false,
    size: 10_000,
    onConnect(_session, callback) {
      seen.connections += 1;
      callback();
    },
    onMailFrom(address, _session, callback) {
      seen.mails.push(address.args ? String(address.args.SIZE ?? "") : "");
      callback();
    },
    onRcptTo(address, session, callback) {
      seen.rcpts.push(address.address);
      const size = announcedSize(session);
      if (address.address.startsWith("full@")) return callback(fail(552, "5.2.2 Mailbox is full"));
      if (address.address.startsWith("small@") && size > 100)
        return callback(fail(552, "5.2.2 Mailbox is full"));
      if (address.address.startsWith("busy@")) return callback(fail(451, "4.3.0 try later"));
      if (address.address.startsWith("gone@")) return callback(fail(550, "5.1.1 No such user here"));
      callback();
    },
  });
  await new Promise<void>((res) => server.listen(0, "127.0.0.1", res));
  port = (server.server.address() as { port: number }).port;
});

afterAll(async () => {
  for (const c of checks) c.close();
  await new Promise<void>((res) => server.close(() => res()));
});

function quotaCheck(cacheSeconds = 30): QuotaCheck {
  const c = new QuotaCheck({
    timeoutMs: 2000,
    cacheSeconds,
    defaultHost: "127.0.0.1",
    port,
    name: "mx.test",
    logger: pino({ level: "silent" }),
  });
  checks.push(c);
  return c;
}

const reset = () => {
  seen.connections = 0;
  seen.mails = [];
  seen.rcpts = [];
};

describe("the quota probe's LMTP connections", () => {
  it("probes one after another on one kept connection, passing SIZE", async () => {
    reset();
    const c = quotaCheck();
    for (let i = 0; i < 5; i++) {
      const a = await c.check(undefined, `user${i}@example.org`, 100 + i);
      expect(a).toMatchObject({ full: false, reason: "ok" });
    }
    expect(seen.connections).toBe(1);
    // smtp-server refuses a MAIL inside an open transaction (503 nested MAIL): each one followed an RSET.
    expect(seen.mails).toEqual(["100", "101", "102", "103", "104"]);
  });

  it("opens a new connection when the store closed the kept one", async () => {
    reset();
    const c = quotaCheck();
    expect(await c.check(undefined, "a@example.org", 0)).toMatchObject({ full: false, reason: "ok" });
    for (const conn of server.connections) conn.close();
    await new Promise((r) => setTimeout(r, 100));
    expect(await c.check(undefined, "b@example.org", 0)).toMatchObject({ full: false, reason: "ok" });
    expect(seen.connections).toBe(2);
  });

  it("caches 'full' for that SIZE and larger, never 'ok'", async () => {
    reset();
    const c = quotaCheck();
    const first = await c.check(undefined, "small@example.org", 500);
    expect(first).toMatchObject({ full: true, cached: false, reply: "552 5.2.2 Mailbox is full" });
    expect(await c.check(undefined, "Small@Example.org", 600)).toMatchObject({ full: true, cached: true });
    expect(seen.rcpts).toHaveLength(1);
    // A smaller message may fit: asked again, and the store takes it.
    expect(await c.check(undefined, "small@example.org", 50)).toMatchObject({ full: false, reason: "ok" });
    expect(await c.check(undefined, "small@example.org", 50)).toMatchObject({ full: false, reason: "ok" });
    expect(seen.rcpts).toHaveLength(3);
    // cacheSeconds 0: every RCPT asks.
    const uncached = quotaCheck(0);
    await uncached.check(undefined, "full@example.org", 0);
    expect(await uncached.check(undefined, "full@example.org", 0)).toMatchObject({
      full: true,
      cached: false,
    });
  });

  it("only 552 5.2.2 at RCPT means full: 4xx, 550 5.1.1 and a refused MAIL fail open", async () => {
    const c = quotaCheck();
    expect(await c.check(undefined, "busy@example.org", 0)).toMatchObject({
      full: false,
      reason: "tempfail",
    });
    expect(await c.check(undefined, "gone@example.org", 0)).toMatchObject({
      full: false,
      reason: "refused-other",
    });
    // SIZE above the store's own limit: 552 5.3.4 at MAIL (RFC 1870 §6.1), not a full mailbox.
    const tooBig = await c.check(undefined, "full@example.org", 20_000);
    expect(tooBig).toMatchObject({ full: false, reason: "refused-other" });
    expect(tooBig.full ? "" : tooBig.reply).toMatch(/^552 /);
    expect(meansFull({ stage: "mail", code: 552, text: "5.3.4 Message too big", lines: [] })).toBe(false);
    expect(meansFull({ stage: "rcpt", code: 552, text: "Mailbox full", lines: [] })).toBe(true);
    expect(meansFull({ stage: "rcpt", code: 552, text: "5.3.4 too big", lines: [] })).toBe(false);
    expect(meansFull({ stage: "rcpt", code: 550, text: "5.2.2 over quota", lines: [] })).toBe(true);
  });
});
