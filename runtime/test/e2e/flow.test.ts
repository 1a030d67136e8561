/**
 * A message's way (DESIGN.md), end to end through the BUILT BUNDLE, each
 * service its own process as on the hosts:
 *
 *   python smtplib ──25──▶ `serve smtp` (mx1: DNSBL via dnsmasq, spamd, clamd)
 *        └─▶ durable queue ──LMTP──▶ `serve lmtp` ──▶ Maildir
 *   python imaplib ──▶ `serve imap`, poplib ──▶ `serve pop3` (same store)
 *   python smtplib ──587 STARTTLS+AUTH──▶ `serve smtp` (relay1) ──▶ queue ──▶ LMTP
 *
 * Real slapd (accounts), dnsmasq (test blocklist zone bl.test, RFC 5782's
 * 127.0.0.2 test entry), spamd (GTUBE) and clamd (EICAR signature db).
 * mx2 runs the same filters with the reject score out of reach, so GTUBE is
 * tagged there instead of rejected. All on loopback with free ports.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Bundle, buildBundle } from "../cli/bundle.js";
import { type Daemon, EICAR, startClamd, startDnsmasq, startSpamd } from "../filter/daemons.js";
import { type Slapd, startSlapd, type TestAccount } from "../support/slapd.js";
import {
  headerFields,
  mailboxFiles,
  makeCertificate,
  Processes,
  python,
  queueList,
  type Service,
  type SmtpRequest,
  stop,
  waitUntil,
  writeConfig,
} from "./world.js";

const ACCOUNTS: TestAccount[] = [
  { uid: "alice", mail: "alice@example.org", password: "alice-e2e-pw-1", aliases: ["a.liddell@example.org"] },
  { uid: "bob", mail: "bob@example.org", password: "bob-e2e-pw-2" },
  // The second shard: LDAP mailHost names store2 (127.0.0.2, same LMTP port as the VIP).
  { uid: "dave", mail: "dave@example.org", password: "dave-e2e-pw-3", mailHost: "127.0.0.2" },
  // Forwarded by mailRoutingAddress to alice (a list-like alias kept as an account).
  { uid: "erin", mail: "erin@example.org", password: "erin-e2e-pw-4", routingAddress: "alice@example.org" },
];
const [ALICE, BOB] = ACCOUNTS as [TestAccount, TestAccount];
/** RFC 5782 §5: 127.0.0.2 is the entry every blocklist lists, 127.0.0.1 the one none does. */
const LISTED_CLIENT = "127.0.0.2";
const BL_ZONE = "bl.test";
const GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";
/** Delivery after a retry: the queue's retry is 1 s, then 2 s (config below). */
const DELIVERY_TIMEOUT_MS = 15_000;

let bundle: Bundle | undefined;
let dir = "";
let ldap: Slapd | undefined;
const daemons: Daemon[] = [];
const procs = new Processes(() => {
  if (!bundle) throw new Error("bundle not built");
  return bundle;
});
let dnsServer = "";
let storeRoot = "";
let store2Root = "";
let lmtpPort = 0;
let mx1Port = 0;
const files = { store: "", store2: "", mx1: "", mx2: "", relay: "" };
const svc: Partial<Record<"lmtp" | "lmtp2" | "imap" | "pop3" | "mx1" | "mx2" | "relay", Service>> = {};

function need<K extends keyof typeof svc>(name: K): Service {
  const s = svc[name];
  if (!s) throw new Error(`${name} is not running (see the beforeAll / an earlier test's failure)`);
  return s;
}

function ldapSection(l: Slapd) {
  return { uris: [l.uri], baseDn: l.baseDn, bindDn: l.bindDn, bindPasswordFile: l.bindPasswordFile };
}

function filterSection(ports: { spamd: number; clamd: number }, spamRejectScore: number) {
  return {
    dnsServers: [dnsServer],
    dnsTimeoutMs: 2000,
    dnsbl: [{ zone: BL_ZONE, weight: 1 }],
    dnsblRejectScore: 1,
    spamd: { host: "127.0.0.1", port: ports.spamd, timeoutMs: 20_000 },
    clamd: { host: "127.0.0.1", port: ports.clamd, timeoutMs: 20_000 },
    spamTagScore: 5,
    spamRejectScore,
    onScannerFailure: "closed",
  };
}

function queueSection(name: string) {
  return {
    dir: join(dir, `queue-${name}`),
    lmtp: { host: "127.0.0.1", port: lmtpPort },
    // Short enough for a test: first retry after 1 s, then every 2 s.
    retryInitialSeconds: 1,
    retryMaxSeconds: 2,
    scanIntervalSeconds: 1,
    connectTimeoutSeconds: 5,
    socketTimeoutSeconds: 30,
  };
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "mailinfra-e2e-"));
  storeRoot = join(dir, "store");
  store2Root = join(dir, "store2");
  // Everything independent starts at once: the bundle, the directory, DNS and the two scanners.
  const [b, l, dns, spamd, clamd, cert] = await Promise.allSettled([
    buildBundle(),
    startSlapd({ accounts: ACCOUNTS }),
    startDnsmasq({
      a: { [`2.0.0.127.${BL_ZONE}`]: LISTED_CLIENT },
      txt: { [`2.0.0.127.${BL_ZONE}`]: "listed by the mailinfra e2e test zone" },
    }),
    startSpamd(),
    startClamd(),
    makeCertificate(dir),
  ]);
  // Keep whatever started, so afterAll stops it even when something else failed.
  if (b.status === "fulfilled") bundle = b.value;
  if (l.status === "fulfilled") ldap = l.value;
  for (const d of [dns, spamd, clamd]) if (d.status === "fulfilled") daemons.push(d.value);
  const failure = [b, l, dns, spamd, clamd, cert].find((r) => r.status === "rejected");
  if (failure) throw failure.reason;
  const ok = <T>(r: PromiseSettledResult<T>): T => (r as PromiseFulfilledResult<T>).value;
  const tls = ok(cert);
  dnsServer = ok(dns).server;

  const host = (name: string, roles: string[]) => ({ name, roles, drainTimeoutSeconds: 2 });
  // The store pair's active node: one runtime.yaml, three services. LMTP keeps its
  // port across the restarts below (it is the store VIP the queues deliver to).
  const store = await procs.serveOnFreePort("lmtp", "lmtp", async (port) => {
    lmtpPort = port;
    files.store = await writeConfig(dir, "store1", {
      host: host("store1.example.org", ["store"]),
      ldap: ldapSection(ok(l)),
      store: { root: storeRoot },
      lmtp: { listen: [`127.0.0.1:${port}`] },
      imap: { listen: ["127.0.0.1:0"] },
      pop3: { listen: ["127.0.0.1:0"] },
    });
    return files.store;
  });
  svc.lmtp = store.service;
  files.store2 = await writeConfig(dir, "store2", {
    host: host("store2.example.org", ["store"]),
    ldap: ldapSection(ok(l)),
    store: { root: store2Root },
    lmtp: { listen: [`127.0.0.2:${lmtpPort}`] },
  });

  const smtp = { domains: ["example.org"], reverseLookup: false };
  const scanners = { spamd: ok(spamd).port, clamd: ok(clamd).port };
  files.mx2 = await writeConfig(dir, "mx2", {
    host: host("mx2.example.org", ["mx"]),
    ldap: ldapSection(ok(l)),
    smtp: { ...smtp, mx: { listen: ["127.0.0.1:0"] } },
    queue: queueSection("mx2"),
    // Tag only: the reject score is out of GTUBE's reach (~1000).
    filter: filterSection(scanners, 100_000),
  });
  files.relay = await writeConfig(dir, "relay1", {
    host: host("relay1.example.org", ["relay"]),
    tls,
    ldap: ldapSection(ok(l)),
    smtp: { ...smtp, relay: { submissionListen: ["127.0.0.1:0"], listen: [] } },
    queue: queueSection("relay1"),
    filter: filterSection(scanners, 12),
  });
  const [imap, pop3, lmtp2, mx1, mx2, relay] = await Promise.all([
    procs.serve("imap", files.store),
    procs.serve("pop3", files.store),
    procs.serve("lmtp", files.store2, "lmtp2"),
    // mx1 is restarted after kill -9 on the same port.
    procs.serveOnFreePort("smtp", "mx1", async (port) => {
      mx1Port = port;
      files.mx1 = await writeConfig(dir, "mx1", {
        host: host("mx1.example.org", ["mx"]),
        ldap: ldapSection(ok(l)),
        smtp: { ...smtp, mx: { listen: [`127.0.0.1:${port}`] } },
        queue: queueSection("mx1"),
        filter: filterSection(scanners, 12),
      });
      return files.mx1;
    }),
    procs.serve("smtp", files.mx2, "mx2"),
    procs.serve("smtp", files.relay, "relay1"),
  ]);
  Object.assign(svc, { imap, pop3, lmtp2, mx1: mx1.service, mx2, relay });
}, 90_000);

afterAll(async () => {
  await procs.stopAll();
  await Promise.allSettled(daemons.map((d) => d.stop()));
  await ldap?.stop();
  await bundle?.remove();
  if (dir) await rm(dir, { recursive: true, force: true });
}, 30_000);

let seq = 0;
/** A unique Message-ID per test message: how each is found again in the Maildir. */
function messageId(tag: string): string {
  seq += 1;
  return `<e2e-${tag}-${process.pid}-${Date.now()}-${seq}@remote.test>`;
}

function rfc5322(o: { from: string; to: string; subject: string; id?: string; body: string[] }): string {
  const headers = [
    `From: Remote Sender <${o.from}>`,
    `To: ${o.to}`,
    `Subject: ${o.subject}`,
    "Date: Sun, 29 Nov 2026 05:00:00 +0000",
    ...(o.id ? [`Message-ID: ${o.id}`] : []),
    "MIME-Version: 1.0",
    "Content-Type: text/plain; charset=us-ascii",
  ];
  return `${headers.join("\r\n")}\r\n\r\n${o.body.join("\r\n")}\r\n`;
}

function mxRequest(
  port: number,
  data: string,
  rcpt: string[],
  extra: Partial<SmtpRequest> = {},
): SmtpRequest {
  return {
    host: "127.0.0.1",
    port,
    helo: "client.remote.test",
    mail_from: "sender@remote.test",
    rcpt_to: rcpt,
    data,
    ...extra,
  };
}

/** Waits for the message carrying `token` to reach uid's Maildir; returns every copy found. */
async function delivered(uid: string, token: string, ...logs: Service[]): Promise<string[]> {
  return waitUntil(
    `${token} in ${uid}'s Maildir`,
    async () => {
      const found = await mailboxFiles(storeRoot, uid, token);
      return found.length > 0 ? found : undefined;
    },
    DELIVERY_TIMEOUT_MS,
    () => logs.map((s) => s.tail()).join("\n"),
  );
}

/** Waits until the host's queue is empty (`mailinfra queue list`). */
async function queueEmpty(configFile: string, ...logs: Service[]): Promise<void> {
  await waitUntil(
    `queue of ${configFile} empty`,
    async () => ((await queueList(bundle!, configFile)).ids.length === 0 ? true : undefined),
    DELIVERY_TIMEOUT_MS,
    () => logs.map((s) => s.tail()).join("\n"),
  );
}

/** The queue id from "250 2.0.0 Ok: queued as ID". */
function queueIdOf(reply: [number, string] | undefined): string {
  const m = /queued as (\S+)/.exec(reply?.[1] ?? "");
  if (!m?.[1]) throw new Error(`no queue id in ${JSON.stringify(reply)}`);
  return m[1];
}

describe("a message's way through the built bundle", () => {
  it("internet → mx1 (filters) → queue → LMTP → Maildir; read back intact over IMAP and POP3", async () => {
    const mx1 = need("mx1");
    const id = messageId("clean");
    const longLine = `${"0123456789".repeat(90)}end`;
    const data = rfc5322({
      from: "sender@remote.test",
      to: "Alice <a.liddell@example.org>, bob@example.org",
      subject: "Quarterly figures",
      id,
      body: [
        "Hello Alice and Bob,",
        "",
        ".a line that starts with a dot (RFC 5321 section 4.5.2 transparency)",
        "..and one with two",
        "trailing blanks   ",
        "\ttab-indented",
        longLine,
        ".",
        "-- ",
        "Remote Sender",
      ],
    });
    const r = await python("smtp", mxRequest(mx1.port(), data, ["a.liddell@example.org", "bob@example.org"]));
    expect(r.connect, "greeting").toBeUndefined();
    expect(r.features).not.toContain("auth"); // RFC 4954: the MX offers no AUTH
    expect(r.mail?.[0]).toBe(250);
    expect(r.rcpt).toEqual([
      [250, expect.any(String)],
      [250, expect.any(String)],
    ]);
    expect(r.data?.[0], JSON.stringify(r.data)).toBe(250);
    const queueId = queueIdOf(r.data);

    // Alice reads over IMAP (the copy went to her primary mailbox via the alias).
    await delivered("alice", id, mx1, need("lmtp"));
    const imap = await python("imap", {
      host: "127.0.0.1",
      port: need("imap").port(),
      user: ALICE.uid,
      password: ALICE.password,
    });
    expect(imap.login).toBe("OK");
    const copies = imap.messages.filter((m) => m.raw.includes(id));
    expect(copies, "one copy in alice's INBOX").toHaveLength(1);
    const raw = copies[0]!.raw;
    if (process.env.E2E_SHOW) console.log(raw);
    // The sender's message, headers and body, byte for byte after what the servers prepended.
    expect(raw.endsWith(data), "original message intact at the end").toBe(true);
    const added = headerFields(raw.slice(0, raw.length - data.length));
    const names = added.map(([n]) => n.toLowerCase());
    // Final delivery's trace first (RFC 5321 §4.4), then the MX's Received, then the filter's verdict.
    expect(names.slice(0, 4)).toEqual(["return-path", "delivered-to", "received", "received"]);
    expect(added[0]![1]).toBe("<sender@remote.test>");
    // Delivered-To is the envelope recipient LMTP was given (the alias), as Dovecot writes it.
    expect(added[1]![1]).toBe("a.liddell@example.org");
    expect(added[2]![1]).toMatch(/by store1\.example\.org \(mailinfra\) with LMTP/);
    expect(added[3]![1]).toMatch(/from client\.remote\.test .*127\.0\.0\.1.* by mx1\.example\.org/);
    expect(added[3]![1]).toContain(queueId);
    expect(added[3]![1]).toMatch(/with ESMTP/);
    const status = added.find(([n]) => n === "X-Spam-Status")?.[1] ?? "";
    expect(status, "spamd scored it").toMatch(/^No, score=-?\d+\.\d required=5\.0 tests=/);
    expect(added.find(([n]) => n === "X-Spam-Score")?.[1]).toMatch(/^-?\d+\.\d$/);
    expect(names).not.toContain("x-spam-flag");
    // spamd scored the message as delivered, with the MX's Received on top (INTEGRATION-BUGS.md #2).
    expect(status).not.toMatch(/NO_RECEIVED|NO_RELAYS/);
    // Folded filter headers stay folded (INTEGRATION-BUGS.md #3).
    const head = raw.slice(0, raw.length - data.length);
    expect(head).toMatch(/^Authentication-Results: [^\r\n]*\r\n[ \t]+\S/m);
    for (const line of head.split("\r\n")) expect(line.length).toBeLessThanOrEqual(998);

    // The MX logged the verdict as data, with both scanners' results.
    const queued = mx1.proc.lines.find((l) => l.msg === "queued" && l.queueId === queueId);
    const checks = ((queued?.verdict as { checks?: Array<{ check: string; outcome: string }> })?.checks ??
      []) as Array<{ check: string; outcome: string }>;
    expect(checks.find((c) => c.check === "dnsbl")?.outcome, JSON.stringify(checks)).toBe("pass");
    expect(checks.find((c) => c.check === "clamd")?.outcome).toBe("pass");
    expect(checks.find((c) => c.check === "spamd")?.outcome).toMatch(/pass|ham|ok/);
    // Each check's result and score, and the policy that decided, as the statistics load them.
    const verdict = queued?.verdict as Record<string, unknown>;
    expect(verdict).toMatchObject({ action: "accept", decidedBy: "none", stage: "data" });
    expect(typeof verdict.score).toBe("number");
    expect(typeof (checks.find((c) => c.check === "spamd") as { score?: unknown })?.score).toBe("number");
    for (const c of checks) expect(["pass", "fail", "error", "skip"]).toContain(c.outcome);

    // Bob reads over POP3: the same message, his own trace.
    await delivered("bob", id, mx1, need("lmtp"));
    const pop = await python("pop3", {
      host: "127.0.0.1",
      port: need("pop3").port(),
      user: BOB.uid,
      password: BOB.password,
    });
    expect(pop.login).toMatch(/^\+OK/);
    const bobs = pop.messages.filter((m) => m.includes(id));
    expect(bobs).toHaveLength(1);
    expect(bobs[0]!.endsWith(data), "intact over POP3").toBe(true);
    expect(bobs[0]).toMatch(/^Return-Path: <sender@remote\.test>\r\nDelivered-To: bob@example\.org\r\n/);
    expect(pop.uidl).toHaveLength(pop.messages.length);
  });

  it("an unknown recipient gets 550 5.1.1 at RCPT; the known one in the same transaction is delivered", async () => {
    const mx1 = need("mx1");
    const id = messageId("unknown");
    const data = rfc5322({
      from: "sender@remote.test",
      to: "alice@example.org",
      subject: "one good, one bad",
      id,
      body: ["hi"],
    });
    const r = await python("smtp", mxRequest(mx1.port(), data, ["nobody@example.org", "alice@example.org"]));
    expect(r.rcpt?.[0]?.[0]).toBe(550);
    expect(r.rcpt?.[0]?.[1]).toMatch(/^5\.1\.1 /);
    expect(r.rcpt?.[1]?.[0]).toBe(250);
    expect(r.data?.[0]).toBe(250);
    expect(await delivered("alice", id, mx1, need("lmtp"))).toHaveLength(1);
    // And a domain we do not serve is no relay.
    const relay = await python("smtp", mxRequest(mx1.port(), data, ["someone@elsewhere.test"]));
    expect(relay.rcpt?.[0]?.[0]).toBe(554);
    expect(relay.rcpt?.[0]?.[1]).toMatch(/^5\.7\.1 .*Relay access denied/);
  });

  it("mailHost routes dave's copy by LMTP to store2; mailRoutingAddress forwards erin's to alice", async () => {
    const id = messageId("route");
    const data = rfc5322({
      from: "sender@remote.test",
      to: "dave@example.org, erin@example.org",
      subject: "routing",
      id,
      body: ["two shards"],
    });
    const sent = await python(
      "smtp",
      mxRequest(need("mx1").port(), data, ["dave@example.org", "erin@example.org"]),
    );
    expect(sent.data?.[0]).toBe(250);
    const onStore2 = await waitUntil(
      `${id} in dave's Maildir on store2`,
      async () => {
        const found = await mailboxFiles(store2Root, "dave", id);
        return found.length > 0 ? found : undefined;
      },
      DELIVERY_TIMEOUT_MS,
      () => [need("mx1"), need("lmtp2")].map((s) => s.tail()).join("\n"),
    );
    expect(onStore2).toHaveLength(1);
    expect(await mailboxFiles(storeRoot, "dave", id)).toEqual([]);
    const forwarded = await delivered("alice", id, need("mx1"), need("lmtp"));
    expect(forwarded).toHaveLength(1);
    expect(await mailboxFiles(storeRoot, "erin", id)).toEqual([]);
  });

  it("GTUBE: mx1 rejects it at DATA (spamRejectScore 12); mx2 (tag only) files it with X-Spam-Flag: YES", async () => {
    const mx1 = need("mx1");
    const mx2 = need("mx2");
    const id1 = messageId("gtube-reject");
    const body = ["This is the GTUBE, the generic test for unsolicited bulk email:", "", GTUBE, ""];
    const data1 = rfc5322({
      from: "sender@remote.test",
      to: "bob@example.org",
      subject: "gtube",
      id: id1,
      body,
    });
    const r1 = await python("smtp", mxRequest(mx1.port(), data1, ["bob@example.org"]));
    expect(r1.data?.[0], JSON.stringify(r1)).toBe(550);
    expect(r1.data?.[1]).toMatch(/^5\.7\.1 .*spam/i);

    const id2 = messageId("gtube-tag");
    const data2 = rfc5322({
      from: "sender@remote.test",
      to: "bob@example.org",
      subject: "gtube",
      id: id2,
      body,
    });
    const r2 = await python("smtp", mxRequest(mx2.port(), data2, ["bob@example.org"]));
    expect(r2.data?.[0], JSON.stringify(r2)).toBe(250);
    const [copy] = await delivered("bob", id2, mx2, need("lmtp"));
    const fields = headerFields(copy!);
    expect(fields.find(([n]) => n === "X-Spam-Flag")?.[1]).toBe("YES");
    expect(fields.find(([n]) => n === "X-Spam-Status")?.[1]).toMatch(/^Yes, score=\d{3,}\.\d .*GTUBE/);
    expect(copy!.endsWith(data2)).toBe(true);
    // The rejected one went nowhere.
    expect(await mailboxFiles(storeRoot, "bob", id1)).toEqual([]);
  });

  it("EICAR in an attachment is rejected (clamd) and never queued", async () => {
    const mx1 = need("mx1");
    const id = messageId("eicar");
    const boundary = "e2e-boundary-42";
    const attachment = Buffer.from(EICAR).toString("base64");
    const data = [
      "From: <sender@remote.test>",
      "To: alice@example.org",
      "Subject: invoice",
      `Message-ID: ${id}`,
      "MIME-Version: 1.0",
      `Content-Type: multipart/mixed; boundary="${boundary}"`,
      "",
      `--${boundary}`,
      "Content-Type: text/plain",
      "",
      "see attachment",
      `--${boundary}`,
      'Content-Type: application/octet-stream; name="invoice.com"',
      "Content-Transfer-Encoding: base64",
      'Content-Disposition: attachment; filename="invoice.com"',
      "",
      attachment,
      `--${boundary}--`,
      "",
    ].join("\r\n");
    const before = await queueList(bundle!, files.mx1);
    const r = await python("smtp", mxRequest(mx1.port(), data, ["alice@example.org"]));
    expect(r.data?.[0], JSON.stringify(r)).toBe(554);
    expect(r.data?.[1]).toMatch(/^5\.7\.1 .*virus.*Eicar-Test-Signature/i);
    expect((await queueList(bundle!, files.mx1)).ids).toEqual(before.ids);
    expect(await mailboxFiles(storeRoot, "alice", id)).toEqual([]);
  });

  it(`a client listed in ${BL_ZONE} (from ${LISTED_CLIENT}) is refused with 554 at the greeting`, async () => {
    const r = await python(
      "smtp",
      mxRequest(need("mx1").port(), "unused\r\n", ["alice@example.org"], { source: LISTED_CLIENT }),
    );
    expect(r.connect?.[0], JSON.stringify(r)).toBe(554);
    expect(r.connect?.[1]).toContain(BL_ZONE);
  });

  it("submission on relay1: STARTTLS, then AUTH, to a local user; read over POP3", async () => {
    const relay = need("relay");
    const token = `e2e-submission-${process.pid}-${Date.now()}`;
    // No Date, no Message-ID: the submission server adds them (RFC 6409 §8).
    const data = `From: Alice <alice@example.org>\r\nTo: bob@example.org\r\nSubject: ${token}\r\n\r\nLunch at noon?\r\n`;
    const r = await python("smtp", {
      host: "127.0.0.1",
      port: relay.port(),
      helo: "laptop.example.org",
      starttls: true,
      auth: { user: ALICE.uid, password: ALICE.password },
      mail_from: ALICE.mail,
      rcpt_to: [BOB.mail],
      data,
    });
    expect(r.features, "RFC 4954 §4: no AUTH before TLS").not.toContain("auth");
    expect(r.starttls?.[0]).toBe(220);
    expect(r.features_tls).toContain("auth");
    expect(r.auth?.[0], JSON.stringify(r)).toBe(235);
    expect(r.mail?.[0]).toBe(250);
    expect(r.data?.[0], JSON.stringify(r)).toBe(250);
    const queueId = queueIdOf(r.data);

    await delivered("bob", token, relay, need("lmtp"));
    const pop = await python("pop3", {
      host: "127.0.0.1",
      port: need("pop3").port(),
      user: BOB.uid,
      password: BOB.password,
    });
    const copies = pop.messages.filter((m) => m.includes(token));
    expect(copies).toHaveLength(1);
    const fields = headerFields(copies[0]!);
    const received = fields.filter(([n]) => n === "Received").map(([, v]) => v);
    expect(received[1]).toMatch(/by relay1\.example\.org .*with ESMTPSA/); // RFC 3848: TLS + AUTH
    expect(received[1]).toContain(queueId);
    expect(fields.find(([n]) => n === "Message-ID")?.[1]).toMatch(/^<.+@relay1\.example\.org>$/);
    expect(fields.some(([n]) => n === "Date")).toBe(true);
    expect(copies[0]!.endsWith("\r\n\r\nLunch at noon?\r\n")).toBe(true);

    // A wrong password is refused, and nothing is sent.
    const bad = await python("smtp", {
      host: "127.0.0.1",
      port: relay.port(),
      helo: "laptop.example.org",
      starttls: true,
      auth: { user: ALICE.uid, password: "not-her-password" },
      mail_from: ALICE.mail,
      rcpt_to: [BOB.mail],
      data,
    });
    expect(bad.auth?.[0]).toBe(535);
    expect(bad.mail?.[0]).toBe(530);
  });

  it("with LMTP stopped the MX still answers 250; the queue retries and delivers once LMTP is back", async () => {
    const mx1 = need("mx1");
    const lmtp = need("lmtp");
    expect(await stop(lmtp.proc, "SIGTERM")).toEqual({ code: 0, signal: null });
    delete svc.lmtp;

    const id = messageId("lmtp-down");
    const data = rfc5322({
      from: "sender@remote.test",
      to: "alice@example.org",
      subject: "queued",
      id,
      body: ["x"],
    });
    const r = await python("smtp", mxRequest(mx1.port(), data, ["alice@example.org"]));
    expect(r.data?.[0], JSON.stringify(r)).toBe(250);
    const queueId = queueIdOf(r.data);
    // The first attempt fails (connection refused) and the message waits in the queue,
    // as ops see it with `mailinfra queue list`.
    const listed = await waitUntil(
      "a failed LMTP attempt in `queue list`",
      async () => {
        const q = await queueList(bundle!, files.mx1);
        return new RegExp(`^${queueId} .*attempts=[1-9]`, "m").test(q.text) ? q.text : undefined;
      },
      DELIVERY_TIMEOUT_MS,
      () => mx1.tail(),
    );
    expect(listed).toContain("alice@example.org");
    expect(await mailboxFiles(storeRoot, "alice", id)).toEqual([]);

    svc.lmtp = await procs.serve("lmtp", files.store);
    const copies = await delivered("alice", id, mx1, svc.lmtp);
    expect(copies).toHaveLength(1);
    await queueEmpty(files.mx1, mx1);
    expect(await mailboxFiles(storeRoot, "alice", id)).toHaveLength(1);
  });

  it("kill -9 of the MX right after its 250, then a restart: delivered exactly once", async () => {
    const mx1 = need("mx1");
    const lmtp = need("lmtp");
    // LMTP down first, so the message is certainly still in the queue when the MX dies.
    await stop(lmtp.proc, "SIGTERM");
    delete svc.lmtp;
    const id = messageId("kill9");
    const data = rfc5322({
      from: "sender@remote.test",
      to: "alice@example.org",
      subject: "durable",
      id,
      body: ["y"],
    });
    const r = await python("smtp", mxRequest(mx1.port(), data, ["alice@example.org"]));
    expect(r.data?.[0], JSON.stringify(r)).toBe(250);
    const queueId = queueIdOf(r.data);
    expect(await stop(mx1.proc, "SIGKILL")).toEqual({ code: null, signal: "SIGKILL" });
    delete svc.mx1;
    expect((await queueList(bundle!, files.mx1)).ids).toContain(queueId);

    svc.lmtp = await procs.serve("lmtp", files.store);
    svc.mx1 = await procs.serve("smtp", files.mx1, "mx1");
    expect(svc.mx1.port()).toBe(mx1Port);
    await delivered("alice", id, svc.mx1, svc.lmtp);
    await queueEmpty(files.mx1, svc.mx1);
    const copies = await mailboxFiles(storeRoot, "alice", id);
    expect(copies, "exactly one copy").toHaveLength(1);
    expect(copies[0]!.endsWith(data)).toBe(true);
    const imap = await python("imap", {
      host: "127.0.0.1",
      port: need("imap").port(),
      user: ALICE.uid,
      password: ALICE.password,
    });
    expect(imap.messages.filter((m) => m.raw.includes(id))).toHaveLength(1);
  });
});
