/**
 * smtp.quotaCheck (smtp/quota-check.ts): the MX asks the store that would get
 * the copy — the runtime's own LMTP service on a Maildir store, recipients in
 * a real slapd — at RCPT, and a full mailbox is refused to the client with
 * 552 5.2.2 (RFC 3463 X.2.2, RFC 1870 §6.1) instead of being bounced later to
 * the (mostly forged) sender. Clients: Python's smtplib and swaks. The check
 * fails open: a store that is down or silent changes nothing.
 */
import { mkdtemp, readdir, readFile } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import pino from "pino";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RuntimeConfigSchema } from "../../src/config/schema.js";
import { startLmtp } from "../../src/lmtp/service.js";
import { QueueStore } from "../../src/queue/store.js";
import type { RunningService } from "../../src/service.js";
import { createMaildirStore } from "../../src/store/index.js";
import type { MailStore } from "../../src/store/types.js";
import { jsonSink } from "../support/log-sink.js";
import { rcptSession } from "../support/rcpt-client.js";
import {
  freePort,
  makeConfig,
  type Running,
  startService,
  startWorld,
  swaks,
  type World,
} from "./harness.js";

let world: World;
let root: string;
let store: MailStore;
let lmtp: RunningService;
let lmtpPort: number;
/** quotaCheck on (defaults but the timeout). */
let mx: Running;
/** quotaCheck.enabled: false. */
let off: Running;
const logs: Array<Record<string, unknown>> = [];
const services: Running[] = [];

const FULL_MARK = "MAILBOX-FULL-FILLER";

function messageOf(bytes: number): Buffer {
  const head = `Subject: ${FULL_MARK}\r\n\r\n`;
  return Buffer.from(head + "x".repeat(bytes - head.length));
}

beforeAll(async () => {
  world = await startWorld();
  for (const a of [
    { uid: "full", mail: "full@example.org", password: "full-pw-1", quotaBytes: 600 },
    { uid: "half", mail: "half@example.org", password: "half-pw-2", quotaBytes: 1000 },
    { uid: "sender2", mail: "sender2@example.org", password: "sender2-pw-3" },
  ])
    await world.slapd.addAccount(a);
  root = await mkdtemp(join(world.dir, "maildirs-"));
  store = createMaildirStore({ root, fsync: true, defaultQuotaBytes: 10_000_000 });
  await (await store.open("full", { quotaBytes: 600 })).append("INBOX", messageOf(600));
  await (await store.open("half", { quotaBytes: 1000 })).append("INBOX", messageOf(400));
  const config = RuntimeConfigSchema.parse({
    host: { name: "store.example.org", roles: ["store"] },
    lmtp: { listen: ["127.0.0.1:0"] },
    store: { root, fsync: true },
    ldap: world.slapd.ldapConfig(),
  });
  lmtp = await startLmtp({
    config,
    logger: pino({ level: "silent" }),
    metrics: new Registry(),
    directory: world.directory,
    store,
  });
  lmtpPort = Number(lmtp.addresses()[0]?.split(":").pop());
  mx = await start({ quotaCheck: { timeoutMs: 2000 } }, lmtpPort, pino({ level: "info" }, jsonSink(logs)));
  off = await start({ quotaCheck: { enabled: false } }, lmtpPort);
});

afterAll(async () => {
  for (const s of services) await s.service.drain(1000);
  await lmtp?.drain(1000);
  await store?.close();
  await world?.stop();
});

async function start(smtp: Record<string, unknown>, port: number, logger?: pino.Logger): Promise<Running> {
  const queueDir = await mkdtemp(join(world.dir, "queue-"));
  const running = await startService(world, makeConfig({ queueDir, lmtpPort: port, smtp }), {}, logger);
  services.push(running);
  return running;
}

/** The messages in an account's Maildir (INBOX), as text. */
async function mailOf(user: string): Promise<string[]> {
  const out: string[] = [];
  for (const sub of ["new", "cur"]) {
    const dir = join(root, user, sub);
    for (const name of await readdir(dir).catch(() => []))
      out.push(await readFile(join(dir, name), "latin1"));
  }
  return out;
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const got = await probe();
    if (got !== undefined) return got;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const queued = (running: Running) => new QueueStore(running.config.queue?.dir ?? "").ids();

/** The quota-status entry of a "quota verdict" log line. */
function quotaCheckOf(line: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  const verdict = line?.verdict as { checks?: Array<Record<string, unknown>> } | undefined;
  return verdict?.checks?.at(-1);
}

const FULL_REPLY: [number, string] = [
  552,
  "5.2.2 <full@example.org>: Recipient address rejected: Mailbox full",
];

describe("smtp.quotaCheck: a full mailbox is refused at the MX's RCPT", () => {
  it("552 5.2.2 at RCPT for the full mailbox; the other recipient is taken and delivered; nothing queued for it, no DSN", async () => {
    const r = await rcptSession({
      port: mx.mx,
      lmtp: false,
      from: "bob@example.org",
      rcpts: ["full@example.org", "alice@example.org"],
      message: "Subject: quota-mx-1\r\n\r\nhello\r\n",
    });
    expect(r.rcpt[0]).toEqual(FULL_REPLY);
    expect(r.rcpt[1]?.[0]).toBe(250);
    expect(r.data[0]?.[0]).toBe(250);
    await waitFor("alice's copy", async () =>
      (await mailOf("alice")).some((m) => m.includes("quota-mx-1")) ? true : undefined,
    );
    // The queue had only alice: once she has it, the queue is empty — no DSN waiting or sent.
    await waitFor("an empty queue", async () => ((await queued(mx)).length === 0 ? true : undefined));
    await new Promise((res) => setTimeout(res, 1000));
    expect(await queued(mx)).toEqual([]);
    expect(await mailOf("bob")).toEqual([]);
    expect((await mailOf("full")).every((m) => m.includes(FULL_MARK))).toBe(true);
    const verdict = logs.find((l) => l.msg === "quota verdict" && l.rcpt === "full@example.org");
    expect(verdict).toMatchObject({
      stage: "rcpt",
      reply: "552 5.2.2 <full@example.org>: Recipient address rejected: Mailbox full",
      verdict: { action: "reject", code: 552, enhanced: "5.2.2", decidedBy: "quota-status" },
    });
    expect(quotaCheckOf(verdict)).toMatchObject({ check: "quota-status", outcome: "fail" });
    expect(String(quotaCheckOf(verdict)?.detail)).toContain("552 5.2.2 Mailbox is full");
  });

  it("swaks to the full mailbox alone: 552 5.2.2 at RCPT, no DATA", async () => {
    const r = await swaks([
      "--server",
      "127.0.0.1",
      "--port",
      String(mx.mx),
      "--helo",
      "client.test",
      "--from",
      "someone@remote.test",
      "--to",
      "full@example.org",
    ]);
    expect(r.output).toMatch(
      /<\*\* +552 5\.2\.2 <full@example\.org>: Recipient address rejected: Mailbox full/,
    );
    expect(r.output).not.toMatch(/ -> DATA/);
    // The second refusal within cacheSeconds came from the cache.
    const cached = logs.filter((l) => l.msg === "quota verdict").at(-1);
    expect(String(quotaCheckOf(cached)?.detail)).toContain("(cached)");
    // Counted in /metrics: the store's answers (alice's "ok" in the test before) and the cached one.
    const text = await mx.metrics.metrics();
    expect(text).toMatch(/mailinfra_smtp_quota_checks_total\{result="full"\} [1-9]/);
    expect(text).toMatch(/mailinfra_smtp_quota_checks_total\{result="full-cached"\} [1-9]/);
    expect(text).toMatch(/mailinfra_smtp_quota_checks_total\{result="ok"\} [1-9]/);
  });

  it("552 at RCPT when the client's SIZE is more than the mailbox has left, 250 when it fits", async () => {
    const tooBig = await rcptSession({
      port: mx.mx,
      lmtp: false,
      from: "someone@remote.test",
      mailOptions: ["SIZE=700"],
      rcpts: ["half@example.org"],
    });
    expect(tooBig.rcpt).toEqual([
      [552, "5.2.2 <half@example.org>: Recipient address rejected: Mailbox full"],
    ]);
    const fits = await rcptSession({
      port: mx.mx,
      lmtp: false,
      from: "someone@remote.test",
      mailOptions: ["SIZE=100"],
      rcpts: ["half@example.org"],
    });
    expect(fits.rcpt[0]?.[0]).toBe(250);
  });

  it("relay port 25 and submission (AUTH): a colleague's full mailbox gets 552 5.2.2 at RCPT", async () => {
    const relay = await rcptSession({
      port: mx.relay,
      lmtp: false,
      from: "bob@example.org",
      rcpts: ["full@example.org"],
    });
    expect(relay.rcpt).toEqual([FULL_REPLY]);
    const submission = await swaks(
      [
        "--server",
        "127.0.0.1",
        "--port",
        String(mx.submission),
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        "alice",
        "--from",
        "alice@example.org",
        "--to",
        "full@example.org",
      ],
      "alice-pw-1",
    );
    expect(submission.output).toMatch(/<~ +235 /);
    expect(submission.output).toMatch(
      /<~\* +552 5\.2\.2 <full@example\.org>: Recipient address rejected: Mailbox full/,
    );
  });
});

describe("smtp.quotaCheck fails open", () => {
  it("store LMTP down (connection refused): 250 at RCPT and the message is queued", async () => {
    const down = await start({ quotaCheck: { timeoutMs: 2000 } }, await freePort());
    const r = await rcptSession({
      port: down.mx,
      lmtp: false,
      from: "someone@remote.test",
      rcpts: ["full@example.org", "alice@example.org"],
      message: "Subject: quota-down\r\n\r\nhello\r\n",
    });
    expect(r.rcpt.map(([code]) => code)).toEqual([250, 250]);
    expect(r.data[0]?.[0]).toBe(250);
    expect(await queued(down)).toHaveLength(1);
    // The first failed to connect; the second was not tried (the store is held down for a while).
    const text = await down.metrics.metrics();
    expect(text).toMatch(/mailinfra_smtp_quota_checks_total\{result="unreachable"\} 1\b/);
    expect(text).toMatch(/mailinfra_smtp_quota_checks_total\{result="store-down"\} 1\b/);
  });

  it("store LMTP not answering: 250 at RCPT after timeoutMs, and the message is queued", async () => {
    const held: Socket[] = [];
    const silent: Server = createServer((socket) => held.push(socket)); // accepts, never greets
    await new Promise<void>((res) => silent.listen(0, "127.0.0.1", res));
    const port = (silent.address() as { port: number }).port;
    try {
      const slow = await start({ quotaCheck: { timeoutMs: 400 } }, port);
      const r = await rcptSession({
        port: slow.mx,
        lmtp: false,
        from: "someone@remote.test",
        rcpts: ["full@example.org"],
        message: "Subject: quota-silent\r\n\r\nhello\r\n",
      });
      expect(r.rcpt[0]?.[0]).toBe(250);
      expect(r.rcptMs[0]).toBeGreaterThanOrEqual(350);
      expect(r.rcptMs[0]).toBeLessThan(1500);
      expect(r.data[0]?.[0]).toBe(250);
      expect(await queued(slow)).toHaveLength(1);
      expect(await slow.metrics.metrics()).toMatch(
        /mailinfra_smtp_quota_checks_total\{result="timeout"\} 1\b/,
      );
    } finally {
      for (const s of held) s.destroy();
      silent.close();
    }
  });
});

describe("smtp.quotaCheck.enabled: false", () => {
  it("the old behaviour: 250 at RCPT, queued, then the store's 552 5.2.2 becomes a DSN to the sender", async () => {
    const r = await rcptSession({
      port: off.mx,
      lmtp: false,
      from: "sender2@example.org",
      rcpts: ["full@example.org"],
      message: "Subject: quota-off\r\n\r\nhello\r\n",
    });
    expect(r.rcpt[0]?.[0]).toBe(250);
    expect(r.data[0]?.[0]).toBe(250);
    const dsn = await waitFor("a DSN to sender2", async () => (await mailOf("sender2"))[0]);
    expect(dsn).toContain("Final-Recipient: rfc822; full@example.org");
    expect(dsn).toContain("Status: 5.2.2");
  });
});
