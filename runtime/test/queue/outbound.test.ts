/**
 * Outbound SMTP against remote MX hosts found through a real DNS server
 * (Debian's dnsmasq), each an smtp-server that records what it gets
 * (next-hop.ts); mail goes in with python3's smtplib through the relay port:
 *  - opportunistic STARTTLS falls back to plaintext when the handshake fails
 *    (Postfix smtp_tls_security_level=may), in the same attempt;
 *  - DSN requests are passed on to a next hop that advertises DSN (RFC 3461
 *    §4), which then reports itself; without DSN there, we send "relayed";
 *  - a 4xx for the whole transaction (greeting, MAIL, every RCPT) sends the
 *    recipients to the next MX in the same attempt (RFC 5321 §5.1); a 4xx
 *    for one recipient while another is accepted stays a deferral.
 */
import { mkdtemp, readdir } from "node:fs/promises";
import { join } from "node:path";
import { Writable } from "node:stream";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type Dnsmasq,
  makeConfig,
  python,
  type Running,
  startDnsmasq,
  startService,
  startWorld,
  type World,
} from "../smtp/harness.js";
import { type NextHop, type NextHops, startNextHops } from "./next-hop.js";

let world: World;
let dns: Dnsmasq;
let hops: NextHops;
let smtp: Running;
let queueDir: string;
const logs: Array<Record<string, unknown>> = [];

const TLS_BROKEN = "127.0.0.5";
const DSN_HOP = "127.0.0.6";
const NO_DSN_HOP = "127.0.0.7";
const MAIL_4XX = "127.0.0.8";
const MAIL_4XX_NEXT = "127.0.0.9";
const RCPT_4XX = "127.0.0.10";
const RCPT_4XX_NEXT = "127.0.0.11";
const PARTIAL = "127.0.0.12";
const PARTIAL_NEXT = "127.0.0.13";
const GREET_4XX = "127.0.0.14";
const GREET_4XX_NEXT = "127.0.0.15";

beforeAll(async () => {
  world = await startWorld();
  const busy = { code: 451, text: "4.3.2 try again later" };
  hops = await startNextHops([
    // A legacy partner: TLS 1.0 only, which Node's client refuses (minimum TLS 1.2).
    {
      host: TLS_BROKEN,
      tls: { ...world.tls, minVersion: "TLSv1", maxVersion: "TLSv1", ciphers: "DEFAULT:@SECLEVEL=0" },
    },
    { host: DSN_HOP, dsn: true },
    { host: NO_DSN_HOP, dsn: false },
    { host: MAIL_4XX, mail: busy },
    { host: MAIL_4XX_NEXT },
    { host: RCPT_4XX, rcpt: () => ({ code: 452, text: "4.2.2 mailbox full for now" }) },
    { host: RCPT_4XX_NEXT },
    { host: PARTIAL, rcpt: (a) => (a.startsWith("busy") ? busy : null) },
    { host: PARTIAL_NEXT },
    { host: GREET_4XX, greeting: { code: 421, text: "4.3.2 too busy, come back later" } },
    { host: GREET_4XX_NEXT },
  ]);
  const mx = (domain: string, first: string, second?: string) => [
    `--mx-host=${domain},mx1.${domain},5`,
    `--host-record=mx1.${domain},${first}`,
    ...(second ? [`--mx-host=${domain},mx2.${domain},10`, `--host-record=mx2.${domain},${second}`] : []),
  ];
  dns = await startDnsmasq([
    ...mx("tls-broken.test", TLS_BROKEN),
    ...mx("dsn.test", DSN_HOP),
    ...mx("nodsn.test", NO_DSN_HOP),
    ...mx("mail-busy.test", MAIL_4XX, MAIL_4XX_NEXT),
    ...mx("rcpt-busy.test", RCPT_4XX, RCPT_4XX_NEXT),
    ...mx("partial.test", PARTIAL, PARTIAL_NEXT),
    ...mx("greet-busy.test", GREET_4XX, GREET_4XX_NEXT),
  ]);
  queueDir = await mkdtemp(join(world.dir, "queue-"));
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split("\n")) if (line) logs.push(JSON.parse(line));
      done();
    },
  });
  smtp = await startService(
    world,
    makeConfig({
      queueDir,
      lmtpPort: world.lmtp.port,
      queue: { dnsServers: [`127.0.0.1:${dns.port}`], remoteSmtpPort: hops.port, connectTimeoutSeconds: 3 },
    }),
    {},
    pino({ level: "info" }, sink),
  );
});

afterAll(async () => {
  await smtp?.service.drain(1000);
  await hops?.close();
  await dns?.stop();
  await world?.stop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** python3 smtplib through the relay port from its trusted address; one RCPT parameter list per recipient. */
async function send(options: {
  to: string[];
  subject: string;
  mail?: string[];
  rcpt?: string[][];
}): Promise<string> {
  const out = await python(
    `
import smtplib, socket, sys, json
a = json.loads(sys.argv[2])
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), source_address=("127.0.0.2", 0))
s.ehlo("client.test")
code, msg = s.mail("alice@example.org", a["mail"])
assert code == 250, msg
for i, r in enumerate(a["to"]):
    code, msg = s.rcpt(r, a["rcpt"][i] if i < len(a["rcpt"]) else [])
    assert code == 250, msg
code, msg = s.data(("Subject: " + a["subject"] + "\\r\\n\\r\\nbody\\r\\n").encode())
print(code, msg.decode())
s.quit()
`,
    [String(smtp.relay), JSON.stringify({ mail: [], rcpt: [], ...options })],
  );
  const id = out.match(/^250 2\.0\.0 Ok: queued as (\S+)/)?.[1];
  if (!id) throw new Error(`not queued: ${out}`);
  return id;
}

async function waitFor<T>(find: () => T | undefined, what: string, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = find();
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

async function waitGone(id: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while ((await readdir(join(queueDir, "msg"))).includes(id)) {
    if (Date.now() > deadline) throw new Error(`${id} still queued`);
    await sleep(50);
  }
}

const hop = (host: string): NextHop => {
  const h = hops.hops.get(host);
  if (!h) throw new Error(`no hop ${host}`);
  return h;
};
const withSubject = (h: NextHop, subject: string) =>
  h.messages.filter((m) => m.data.toString().includes(`Subject: ${subject}\r\n`));
const deliveries = (id: string) => logs.filter((l) => l.msg === "delivery" && l.queueId === id);

describe("opportunistic STARTTLS", () => {
  it("delivers in plaintext, in the same attempt, when the TLS handshake fails", async () => {
    const id = await send({ to: ["partner@tls-broken.test"], subject: "tls-broken-1" });
    const [got] = await waitFor(() => {
      const m = withSubject(hop(TLS_BROKEN), "tls-broken-1");
      return m.length > 0 ? m : undefined;
    }, "plaintext delivery");
    expect(got?.secure).toBe(false);
    expect(got?.to).toEqual(["partner@tls-broken.test"]);
    // STARTTLS was offered and tried: one session failed its handshake, the second went on in plaintext
    expect(hop(TLS_BROKEN).tlsErrors).toBeGreaterThanOrEqual(1);
    expect(hop(TLS_BROKEN).sessions).toBe(2);
    await waitGone(id);
    expect(deliveries(id).map((l) => [l.attempt, l.status])).toEqual([[1, "delivered"]]);
    expect(
      logs.some(
        (l) => l.msg === "STARTTLS handshake failed: retried in plaintext" && l.address === TLS_BROKEN,
      ),
    ).toBe(true);
  });
});

describe("DSN requests (RFC 3461 §4)", () => {
  it("passes NOTIFY, ORCPT, RET and ENVID to a next hop with DSN, and sends no DSN of its own", async () => {
    const id = await send({
      to: ["one@dsn.test", "two@dsn.test", "three@dsn.test"],
      subject: "dsn-relay-1",
      mail: ["RET=HDRS", "ENVID=env+2Bdsn-1"],
      rcpt: [["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;orig-one@example.net"], ["NOTIFY=SUCCESS"], []],
    });
    await waitGone(id);
    const got = withSubject(hop(DSN_HOP), "dsn-relay-1");
    const rcpt = Object.assign({}, ...got.map((m) => m.rcpt));
    expect(rcpt).toEqual({
      "one@dsn.test": { notify: ["SUCCESS", "FAILURE"], orcpt: "rfc822;orig-one@example.net" },
      "two@dsn.test": { notify: ["SUCCESS"] },
      "three@dsn.test": {},
    });
    for (const m of got) expect(m.mail).toEqual({ ret: "HDRS", envid: "env+dsn-1" });
    // The DSN (had there been one) is queued before the message leaves the queue, and LMTP is up.
    await sleep(500);
    expect(world.lmtp.messages.filter((m) => m.from === "" && m.data.toString().includes(id))).toEqual([]);
  });

  it("sends its own 'relayed' DSN for NOTIFY=SUCCESS when the next hop has no DSN", async () => {
    const id = await send({
      to: ["one@nodsn.test"],
      subject: "dsn-norelay-1",
      mail: ["ENVID=env-nodsn-1"],
      rcpt: [["NOTIFY=SUCCESS"]],
    });
    const [got] = await waitFor(() => {
      const m = withSubject(hop(NO_DSN_HOP), "dsn-norelay-1");
      return m.length > 0 ? m : undefined;
    }, "delivery to the next hop without DSN");
    expect(got?.mail).toEqual({});
    expect(got?.rcpt).toEqual({ "one@nodsn.test": {} });
    const dsn = await waitFor(
      () => world.lmtp.messages.find((m) => m.from === "" && m.data.toString().includes("env-nodsn-1")),
      "relayed DSN",
    );
    expect(dsn.to).toEqual(["alice@example.org"]);
    expect(dsn.data.toString()).toContain("Action: relayed");
    expect(dsn.data.toString()).toContain("Final-Recipient: rfc822; one@nodsn.test");
    await waitGone(id);
  });
});

describe("next MX after a 4xx for the whole transaction (RFC 5321 §5.1)", () => {
  it.each([
    ["a 4xx to MAIL", "mail-busy.test", MAIL_4XX, MAIL_4XX_NEXT],
    ["a 4xx to every RCPT", "rcpt-busy.test", RCPT_4XX, RCPT_4XX_NEXT],
    ["a 421 greeting", "greet-busy.test", GREET_4XX, GREET_4XX_NEXT],
  ])("after %s, delivers to the next MX in the same attempt", async (_what, domain, first, second) => {
    const subject = `next-mx-${domain}`;
    const id = await send({ to: [`a@${domain}`, `b@${domain}`], subject });
    await waitGone(id);
    const got = withSubject(hop(second), subject);
    expect(got.flatMap((m) => m.to).sort()).toEqual([`a@${domain}`, `b@${domain}`]);
    expect(withSubject(hop(first), subject)).toEqual([]);
    expect(hop(first).sessions).toBeGreaterThanOrEqual(1);
    expect(deliveries(id).map((l) => [l.attempt, l.status])).toEqual([
      [1, "delivered"],
      [1, "delivered"],
    ]);
  });

  it("keeps a per-recipient 4xx as a deferral when the MX accepted another recipient", async () => {
    const subject = "partial-1";
    const id = await send({ to: ["ok@partial.test", "busy@partial.test"], subject });
    await waitGone(id);
    const byAttempt = deliveries(id).map((l) => [l.attempt, l.rcpt, l.status, String(l.reply).slice(0, 9)]);
    // attempt 1: the first MX took ok@ and deferred busy@: busy@ waits for the retry
    expect(byAttempt).toContainEqual([1, "ok@partial.test", "delivered", "250 2.0.0"]);
    expect(byAttempt).toContainEqual([1, "busy@partial.test", "pending", "451 4.3.2"]);
    expect(withSubject(hop(PARTIAL), subject).flatMap((m) => m.to)).toEqual(["ok@partial.test"]);
    // the retry carries busy@ alone; the first MX defers all of that transaction, so the next MX gets it
    expect(byAttempt).toContainEqual([2, "busy@partial.test", "delivered", "250 2.0.0"]);
    expect(withSubject(hop(PARTIAL_NEXT), subject).flatMap((m) => m.to)).toEqual(["busy@partial.test"]);
  });
});
