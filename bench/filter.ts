/**
 * The filtering pipeline's cost, check by check, on a generated corpus:
 * messages (or connections) per second through each check alone, then the
 * whole pipeline — against the real peers (dnsmasq, spamd, clamd) on
 * loopback, as in the tests.
 *
 *   npx tsx bench/filter.ts [--messages 400] [--quick]
 */
import { generateKeyPairSync } from "node:crypto";
import { cpus, loadavg } from "node:os";
import { dkimSign } from "mailauth";
import { type AccessTable, lookupAccess } from "../runtime/src/filter/access.js";
import { runAuth } from "../runtime/src/filter/auth.js";
import { bodyChecks } from "../runtime/src/filter/body-checks.js";
import { clamd } from "../runtime/src/filter/clamd.js";
import type { Session } from "../runtime/src/filter/context.js";
import { cachingResolver } from "../runtime/src/filter/dns.js";
import { dnsbl } from "../runtime/src/filter/dnsbl.js";
import { headerChecks } from "../runtime/src/filter/header-checks.js";
import { helo } from "../runtime/src/filter/helo.js";
import { createFilterPipeline, createShared, loadMaps } from "../runtime/src/filter/index.js";
import { mimeBomb } from "../runtime/src/filter/mime-bomb.js";
import { mimeHeaderChecks } from "../runtime/src/filter/mime-header-checks.js";
import { walkMime } from "../runtime/src/filter/mime-walk.js";
import { RateLimiter } from "../runtime/src/filter/rate.js";
import { spamd } from "../runtime/src/filter/spamd.js";
import { spf } from "../runtime/src/filter/spf.js";
import {
  EICAR,
  filterConfig,
  silentLogger,
  startClamd,
  startDnsmasq,
  startSpamd,
} from "../runtime/test/filter/daemons.js";

const args = process.argv.slice(2);
const quick = args.includes("--quick");
const N = Number(args[args.indexOf("--messages") + 1]) || (quick ? 150 : 400);
const FIX = new URL("../runtime/test/filter/fixtures/", import.meta.url).pathname;

// ---------------------------------------------------------------- corpus
let seed = 42;
const rnd = () => {
  seed = (seed * 1103515245 + 12345) & 0x7fffffff;
  return seed / 0x7fffffff;
};
const pick = <T>(a: T[]): T => a[Math.floor(rnd() * a.length)]!;
const words =
  "the of meeting campus report student grade lab schedule budget offer free click prize account password invoice update library seminar deadline".split(
    " ",
  );
const para = (n: number) => Array.from({ length: n }, () => pick(words)).join(" ");
const lines = (n: number) => Array.from({ length: n }, () => para(12)).join("\r\n");

interface Item {
  msg: Buffer;
  ip: string;
  sender: string;
  kind: string;
}

function makeCorpus(n: number, key: string): Promise<Item[]> {
  const out: Promise<Item>[] = [];
  for (let i = 0; i < n; i++) {
    const r = rnd();
    const ip = `192.0.2.${1 + (i % 250)}`;
    const domain = pick(["sender.test", "signed.test", "list.test"]);
    const sender = `user${i}@${domain}`;
    const head = [
      `From: User ${i} <${sender}>`,
      "To: someone@campus.example.edu",
      `Subject: ${para(5)}`,
      `Date: Sun, 29 Nov 2026 05:${String(i % 60).padStart(2, "0")}:00 +0000`,
      `Message-ID: <${i}.bench@${domain}>`,
      "MIME-Version: 1.0",
    ];
    let body: string;
    let kind: string;
    if (r < 0.5) {
      kind = "plain";
      head.push("Content-Type: text/plain; charset=utf-8");
      body = `${lines(20 + Math.floor(rnd() * 60))}\r\n`;
    } else if (r < 0.85) {
      kind = "multipart";
      const att = Buffer.alloc(8_000 + Math.floor(rnd() * 40_000), i % 251)
        .toString("base64")
        .replace(/.{76}/g, "$&\r\n");
      head.push('Content-Type: multipart/mixed; boundary="b-outer"');
      body = `--b-outer\r\nContent-Type: multipart/alternative; boundary="b-alt"\r\n\r\n--b-alt\r\nContent-Type: text/plain\r\n\r\n${lines(15)}\r\n--b-alt\r\nContent-Type: text/html\r\n\r\n<p>${lines(15)}</p>\r\n--b-alt--\r\n--b-outer\r\nContent-Type: application/pdf; name="report${i}.pdf"\r\nContent-Disposition: attachment; filename="report${i}.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n${att}\r\n--b-outer--\r\n`;
    } else if (r < 0.97) {
      kind = "spammy";
      head[2] = `Subject: Click here to claim your prize ${i}`;
      head.push("Content-Type: text/plain");
      body = `Dear friend,\r\n${lines(10)}\r\na wire transfer fee of $${i} applies\r\n`;
    } else {
      kind = "virus";
      head.push('Content-Type: multipart/mixed; boundary="v"');
      body = `--v\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--v\r\nContent-Type: application/octet-stream; name="x.bin"\r\nContent-Transfer-Encoding: base64\r\n\r\n${Buffer.from(EICAR).toString("base64")}\r\n--v--\r\n`;
    }
    const msg = Buffer.from(`${head.join("\r\n")}\r\n\r\n${body}`);
    out.push(
      (async () => {
        if (domain !== "signed.test") return { msg, ip, sender, kind };
        const k = { signingDomain: "signed.test", selector: "s1", privateKey: key };
        const { signatures } = await dkimSign(msg, { ...k, signatureData: [k] });
        return { msg: Buffer.concat([Buffer.from(signatures), msg]), ip, sender, kind };
      })(),
    );
  }
  return Promise.all(out);
}

// ---------------------------------------------------------------- timing
interface Row {
  name: string;
  perSecond: number;
  p50: number;
  p95: number;
  n: number;
  concurrency: number;
  note?: string;
}
const rows: Row[] = [];

/** Best of `rounds` runs (the machine is shared: the best round is the check's own cost). */
async function measure(
  name: string,
  items: number,
  concurrency: number,
  fn: (i: number) => Promise<unknown> | unknown,
  note?: string,
  rounds = 1,
): Promise<void> {
  let best: Row | undefined;
  for (let r = 0; r < rounds; r++) {
    const row = await once(name, items, concurrency, fn, note);
    if (!best || row.perSecond > best.perSecond) best = row;
  }
  const row = best!;
  rows.push(row);
  console.log(
    `${name.padEnd(34)} ${row.perSecond.toFixed(0).padStart(9)} /s   p50 ${row.p50.toFixed(2).padStart(8)} ms   p95 ${row.p95.toFixed(2).padStart(8)} ms   n=${items} c=${concurrency}${rounds > 1 ? ` best of ${rounds}` : ""}${note ? `   ${note}` : ""}`,
  );
}

async function once(
  name: string,
  items: number,
  concurrency: number,
  fn: (i: number) => Promise<unknown> | unknown,
  note?: string,
): Promise<Row> {
  const lat: number[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items) {
        const i = next++;
        const t = performance.now();
        await fn(i);
        lat.push(performance.now() - t);
      }
    }),
  );
  const secs = (performance.now() - started) / 1000;
  lat.sort((a, b) => a - b);
  const row: Row = {
    name,
    perSecond: items / secs,
    p50: lat[Math.floor(lat.length * 0.5)] ?? 0,
    p95: lat[Math.floor(lat.length * 0.95)] ?? 0,
    n: items,
    concurrency,
    ...(note ? { note } : {}),
  };
  return row;
}

// ---------------------------------------------------------------- main
const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const pem = privateKey.export({ type: "pkcs8", format: "pem" }).toString();
const dkimTxt = `v=DKIM1; k=rsa; p=${publicKey.export({ type: "spki", format: "der" }).toString("base64")}`;

const load = () =>
  loadavg()
    .map((l) => l.toFixed(1))
    .join(" ");
console.log(
  `mailinfra filter bench — node ${process.version}, ${cpus().length} CPU(s) (${cpus()[0]?.model ?? "?"}), load ${load()}`,
);
const a: Record<string, string> = {};
for (let i = 1; i <= 250; i += 7) a[`${i}.2.0.192.zen.bl.test`] = "127.0.0.2";
const [dns, spamdD, clamdD] = await Promise.all([
  startDnsmasq({
    a,
    txt: {
      "sender.test": "v=spf1 ip4:192.0.2.0/24 -all",
      "signed.test": "v=spf1 ip4:192.0.2.0/25 ~all",
      "list.test": "v=spf1 include:_spf.list.test -all",
      "_spf.list.test": "v=spf1 ip4:198.51.100.0/24 ip4:192.0.2.0/24 -all",
      "s1._domainkey.signed.test": dkimTxt,
      "_dmarc.signed.test": "v=DMARC1; p=reject",
      "_dmarc.sender.test": "v=DMARC1; p=none",
    },
  }),
  startSpamd({ maxChildren: 2 }),
  startClamd(),
]);
try {
  const corpus = await makeCorpus(N, pem);
  const bytes = corpus.reduce((s, c) => s + c.msg.length, 0);
  const kinds: Record<string, number> = {};
  for (const c of corpus) kinds[c.kind] = (kinds[c.kind] ?? 0) + 1;
  console.log(`corpus: ${N} messages, ${(bytes / 1e6).toFixed(1)} MB, ${JSON.stringify(kinds)}\n`);

  const config = filterConfig({
    dnsbl: [
      { zone: "zen.bl.test", weight: 1 },
      { zone: "weak.bl.test", weight: 0.5 },
    ],
    dnsServers: [dns.server],
    dnsTimeoutMs: 2000,
    headerChecks: `regexp:${FIX}header_checks`,
    mimeHeaderChecks: `regexp:${FIX}mime_header_checks`,
    bodyChecks: `regexp:${FIX}body_checks`,
    senderAccess: `hash:${FIX}sender_access`,
    recipientAccess: `hash:${FIX}recipient_access`,
    spamd: { host: "127.0.0.1", port: spamdD.port, timeoutMs: 60_000 },
    clamd: { host: "127.0.0.1", port: clamdD.port, timeoutMs: 60_000 },
    rate: { maxConnectionsPerMinute: 0, maxConcurrent: 0 },
  });
  const deps = {
    logger: silentLogger,
    localDomains: ["campus.example.edu"],
    hostname: "mx1.campus.example.edu",
  };
  const shared = createShared(config, deps);
  const maps = loadMaps(config);
  const session = (it: Item): Session => ({
    conn: { remoteAddress: it.ip, remotePort: 1 },
    helo: "mail.sender.test",
    sender: it.sender,
    recipients: [],
    dns: cachingResolver(shared.dns),
  });
  const item = (i: number) => corpus[i % corpus.length]!;
  const limits = config.mimeBomb;
  const PURE = quick ? 20_000 : 100_000;

  console.log("— connection and envelope (per connection / command) —");
  const rate = new RateLimiter({ maxConnectionsPerMinute: 1_000_000, maxConcurrent: 1_000_000 });
  await measure(
    "rate",
    PURE,
    1,
    (i) => {
      const s = session(item(i));
      s.conn!.remotePort = i;
      rate.admit(s);
    },
    undefined,
    3,
  );
  await measure("helo", PURE, 1, (i) => helo(shared, session(item(i)), `mail${i}.sender.test`), undefined, 3);
  const sa = maps.senderAccess as AccessTable;
  await measure("sender-access (hash map)", PURE, 1, (i) => lookupAccess(sa, item(i).sender), undefined, 3);
  await measure("dnsbl (2 zones, dnsmasq)", Math.min(N * 4, 2000), 50, (i) =>
    dnsbl(shared, {
      ...session(item(i)),
      conn: { remoteAddress: `192.0.2.${1 + (i % 250)}`, remotePort: 1 },
    }),
  );
  await measure("spf (mailauth, dnsmasq)", Math.min(N * 2, 1000), 20, (i) =>
    spf(shared, session(item(i)), item(i).sender),
  );

  console.log("\n— content (per message) —");
  await measure(
    "mime-bomb (MIME walk alone)",
    N * 5,
    1,
    (i) => mimeBomb(walkMime(item(i).msg, limits, [])),
    undefined,
    3,
  );
  await measure(
    "header-checks (walk + map)",
    N * 5,
    1,
    (i) => {
      const h = headerChecks(maps.headerChecks, maps.nestedHeaderChecks);
      walkMime(item(i).msg, limits, [h.visitor]);
      return h.findings.result();
    },
    undefined,
    3,
  );
  await measure(
    "mime-header-checks (walk + map)",
    N * 5,
    1,
    (i) => {
      const h = mimeHeaderChecks(maps.mimeHeaderChecks);
      walkMime(item(i).msg, limits, [h.visitor]);
      return h.findings.result();
    },
    undefined,
    3,
  );
  await measure(
    "body-checks (walk + map)",
    N * 5,
    1,
    (i) => {
      const b = bodyChecks(maps.bodyChecks, config.bodyChecksSizeLimit);
      walkMime(item(i).msg, limits, [b.visitor]);
      return b.findings.result();
    },
    undefined,
    3,
  );
  await measure("dkim+dmarc+arc (authenticate)", N, 16, (i) =>
    runAuth(shared, session(item(i)), item(i).msg, item(i).sender),
  );
  await measure("clamd (INSTREAM)", N, 4, (i) => clamd(config.clamd, item(i).msg), "EICAR-only database");
  const spamN = quick ? 40 : Math.min(N, 120);
  await measure(
    "spamd (SYMBOLS)",
    spamN,
    2,
    (i) => spamd(config.spamd, item(i).msg),
    "spamd -L --max-children 2",
  );

  console.log("\n— whole pipeline (connect → data, one transaction per message) —");
  const pipeline = createFilterPipeline(config, deps);
  const verdicts: Record<string, number> = {};
  const run = (p: typeof pipeline) => async (i: number) => {
    const it = item(i);
    const tx = p.transaction();
    const c = await tx.onConnect({ remoteAddress: it.ip, remotePort: 10_000 + i });
    if (c.action === "reject" || c.action === "tempfail") {
      verdicts[`connect ${c.action}`] = (verdicts[`connect ${c.action}`] ?? 0) + 1;
      return;
    }
    await tx.onHelo("mail.sender.test");
    await tx.onMailFrom(it.sender);
    await tx.onRcptTo("someone@campus.example.edu");
    const v = await tx.onData(it.msg, {
      helo: "mail.sender.test",
      mailFrom: it.sender,
      rcptTo: ["someone@campus.example.edu"],
    });
    tx.close?.();
    verdicts[`${v.action} (${v.decidedBy})`] = (verdicts[`${v.action} (${v.decidedBy})`] ?? 0) + 1;
  };
  const noScanners = createFilterPipeline({ ...config, spamd: undefined, clamd: undefined }, deps);
  await measure("pipeline without spamd/clamd", N, 16, run(noScanners));
  await measure("pipeline, all checks", spamN, 4, run(pipeline));
  console.log(`\nverdicts (all runs): ${JSON.stringify(verdicts)}`);
  console.log(
    `load average at the end: ${load()} (the machine is shared; daemon-bound figures vary with it)`,
  );
  console.log(`\nJSON ${JSON.stringify(rows.map((r) => ({ ...r, perSecond: Math.round(r.perSecond) })))}`);
} finally {
  await Promise.all([dns.stop(), spamdD.stop(), clamdD.stop()]);
}
