/**
 * The built bundle on Debian 12's own Node.js 18 (18.20.4, the `nodejs`
 * package unpacked by scripts/node18.sh) and on this machine's Node.js 20:
 * the same tests, once per node. Several dependencies declare Node 20; this
 * is what shows that the bundle (esbuild target node18 + src/cli/compat.ts)
 * really runs on 18.
 *
 * Per node: `version`, `config check` (good and bad file), then lmtp, imap,
 * pop3 and smtp (mx) from ONE runtime.yaml, each its own process, on free
 * loopback ports with a real slapd; one message from Python's smtplib through
 * the MX (its filters: SPF/DKIM/DMARC through mailauth, against a loopback
 * dnsmasq), the durable queue and LMTP into the Maildir, read back with
 * Python's imaplib and poplib; then SIGTERM drains every service to exit 0,
 * with nothing on stderr (no crash, no warning).
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { build as esbuild } from "esbuild";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  headerFields,
  mailboxFiles,
  Processes,
  python,
  type Service,
  stop,
  waitUntil,
  writeConfig,
} from "../e2e/world.js";
import { type Daemon, startDnsmasq } from "../filter/daemons.js";
import { type Slapd, startSlapd, type TestAccount } from "../support/slapd.js";
import { type Bundle, buildBundle, RUNTIME_DIR, runBundle } from "./bundle.js";

const run = promisify(execFile);
const NODE18_SCRIPT = resolve(RUNTIME_DIR, "../scripts/node18.sh");
const COMPAT = join(RUNTIME_DIR, "src/cli/compat.ts");
/** The version Debian 12 ships (bookworm-security), which scripts/node18.sh unpacks. */
const DEBIAN_NODE18 = "v18.20.4";
const DELIVERY_TIMEOUT_MS = 10_000;

const ACCOUNTS: TestAccount[] = [
  { uid: "dora", mail: "dora@example.org", password: "dora-node18-pw-1" },
  { uid: "emil", mail: "emil@example.org", password: "emil-node18-pw-2" },
];
const [DORA, EMIL] = ACCOUNTS as [TestAccount, TestAccount];

let built: Bundle | undefined;
let node18 = "";
let ldap: Slapd | undefined;
let dns: Daemon | undefined;
let dnsServer = "";

beforeAll(async () => {
  const [b, n, l, d] = await Promise.allSettled([
    buildBundle(),
    run("bash", [NODE18_SCRIPT], { timeout: 120_000 }),
    startSlapd({ accounts: ACCOUNTS }),
    startDnsmasq({}),
  ]);
  if (b.status === "fulfilled") built = b.value;
  if (l.status === "fulfilled") ldap = l.value;
  if (d.status === "fulfilled") {
    dns = d.value;
    dnsServer = d.value.server;
  }
  if (n.status === "fulfilled") node18 = n.value.stdout.trim();
  const failure = [b, n, l, d].find((r) => r.status === "rejected");
  if (failure) throw failure.reason;
}, 120_000);

afterAll(async () => {
  await dns?.stop();
  await ldap?.stop();
  await built?.remove();
}, 30_000);

const NODES = [
  { label: "Debian 12's node 18", node: () => node18, version: () => DEBIAN_NODE18 },
  { label: "this machine's node 20", node: () => process.execPath, version: () => process.version },
];

describe.each(NODES)("the bundle on $label", ({ node, version }) => {
  let dir = "";
  let bundle: Bundle | undefined;
  const procs = new Processes(() => {
    if (!bundle) throw new Error("bundle not built");
    return bundle;
  });

  beforeAll(async () => {
    if (!built || !node())
      throw new Error("the bundle or the node binary is missing (see the first beforeAll)");
    bundle = { ...built, node: node() };
    dir = await mkdtemp(join(tmpdir(), "mailinfra-node18-"));
  });

  afterAll(async () => {
    await procs.stopAll();
    if (dir) await rm(dir, { recursive: true, force: true });
  }, 30_000);

  function need(): Bundle {
    if (!bundle) throw new Error("bundle not set up");
    return bundle;
  }

  it("version: names the package and the node that runs it", async () => {
    const r = await runBundle(need(), ["version"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(
      new RegExp(`^mailinfra \\d+\\.\\d+\\.\\d+ .*node ${version().replaceAll(".", "\\.")}\\n$`),
    );
  });

  it("src/cli/compat.ts: File and String#isWellFormed/toWellFormed as Node 20 has them, silently", async () => {
    // compat.ts alone, as the bundle starts with it; the same probe on both nodes must print
    // the same (on 20 the natives answer, on 18 the shims).
    const compat = join(dir, "compat.mjs");
    await esbuild({ entryPoints: [COMPAT], outfile: compat, bundle: true, platform: "node", format: "esm" });
    const probe = [
      `await import(${JSON.stringify(pathToFileURL(compat).href)});`,
      'const f = new File(["héllo"], "a.txt", { type: "text/plain" });',
      "console.log(JSON.stringify({",
      "  blob: f instanceof Blob, tag: Object.prototype.toString.call(f), name: f.name, type: f.type, size: f.size, text: await f.text(),",
      '  wellFormed: ["", "abc", "😀", "a\\uD800b", "\\uDC00", "\\uD83D\\uDE00\\uDE00", "x\\uDBFF"].map((s) =>',
      "    [s.isWellFormed(), s.toWellFormed()]),",
      "}));",
    ].join("\n");
    const { stdout, stderr } = await run(node(), ["--input-type=module", "-e", probe], { timeout: 20_000 });
    expect(stderr, "no ExperimentalWarning").toBe("");
    expect(JSON.parse(stdout)).toEqual({
      blob: true,
      tag: "[object File]",
      name: "a.txt",
      type: "text/plain",
      size: 6,
      text: "héllo",
      wellFormed: [
        [true, ""],
        [true, "abc"],
        [true, "😀"],
        [false, "a\uFFFDb"],
        [false, "\uFFFD"],
        [false, "\uD83D\uDE00\uFFFD"],
        [false, "x\uFFFD"],
      ],
    });
  });

  it("config check: ok for the example runtime.yaml; a bad file names the key", async () => {
    const good = await runBundle(need(), ["config", "check", join(RUNTIME_DIR, "examples/runtime.yaml")]);
    expect({ code: good.code, out: good.stdout, err: good.stderr }).toEqual({
      code: 0,
      out: "ok\n",
      err: "",
    });

    const badFile = join(dir, "bad.yaml");
    await writeFile(
      badFile,
      ["host:", "  name: s1.example.org", "  roles: [store]", "imap:", "  listen: [not-an-address]", ""].join(
        "\n",
      ),
    );
    const bad = await runBundle(need(), ["config", "check", badFile]);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toBe("");
    expect(bad.stderr).toMatch(new RegExp(`^${badFile}: imap\\.listen\\[0\\]: .*\\(line 5\\)$`, "m"));
  });

  it("lmtp, imap, pop3 and smtp (mx) from one runtime.yaml: SMTP → queue → LMTP → Maildir → IMAP and POP3", async () => {
    if (!ldap) throw new Error("slapd did not start");
    const l = ldap;
    const services: Service[] = [];
    // The store's LMTP port goes into the same file (queue.lmtp), so it is chosen first.
    const lmtp = await procs.serveOnFreePort("lmtp", "lmtp", (port) =>
      writeConfig(dir, "host", {
        host: { name: "s1.example.org", roles: ["store", "mx"], drainTimeoutSeconds: 2 },
        ldap: { uris: [l.uri], baseDn: l.baseDn, bindDn: l.bindDn, bindPasswordFile: l.bindPasswordFile },
        store: { root: join(dir, "store") },
        lmtp: { listen: [`127.0.0.1:${port}`] },
        imap: { listen: ["127.0.0.1:0"] },
        pop3: { listen: ["127.0.0.1:0"] },
        smtp: { domains: ["example.org"], reverseLookup: false, mx: { listen: ["127.0.0.1:0"] } },
        queue: {
          dir: join(dir, "queue"),
          lmtp: { host: "127.0.0.1", port },
          retryInitialSeconds: 1,
          retryMaxSeconds: 2,
          scanIntervalSeconds: 1,
        },
        // Every DNS question of the MX's checks (SPF, DKIM, DMARC) goes to the loopback dnsmasq.
        filter: { dnsServers: [dnsServer], dnsTimeoutMs: 2000 },
      }),
    );
    services.push(lmtp.service);
    const [imap, pop3, mx] = await Promise.all([
      procs.serve("imap", lmtp.file),
      procs.serve("pop3", lmtp.file),
      procs.serve("smtp", lmtp.file, "mx"),
    ]);
    services.push(imap, pop3, mx);
    const tails = () => services.map((s) => s.tail()).join("\n");

    const token = `node18-${version()}-${process.pid}-${Date.now()}`;
    const data = [
      "From: Remote Sender <sender@remote.test>",
      "To: Dora <dora@example.org>, emil@example.org",
      `Subject: ${token}`,
      "Date: Sun, 29 Nov 2026 09:00:00 +0000",
      `Message-ID: <${token}@remote.test>`,
      "MIME-Version: 1.0",
      "Content-Type: text/plain; charset=utf-8",
      "Content-Transfer-Encoding: 8bit",
      "",
      `Grüße aus Node ${version()}`,
      ".a line that starts with a dot",
      "",
    ].join("\r\n");
    const sent = await python("smtp", {
      host: "127.0.0.1",
      port: mx.port(),
      helo: "client.remote.test",
      mail_from: "sender@remote.test",
      rcpt_to: [DORA.mail, EMIL.mail],
      data,
    });
    expect(sent.rcpt, `${JSON.stringify(sent)}\n${tails()}`).toEqual([
      [250, expect.any(String)],
      [250, expect.any(String)],
    ]);
    expect(sent.data?.[0], `${JSON.stringify(sent)}\n${tails()}`).toBe(250);

    const storeRoot = join(dir, "store");
    for (const uid of [DORA.uid, EMIL.uid]) {
      await waitUntil(
        `${token} in ${uid}'s Maildir`,
        async () => ((await mailboxFiles(storeRoot, uid, token)).length > 0 ? true : undefined),
        DELIVERY_TIMEOUT_MS,
        tails,
      );
    }

    const read = await python("imap", {
      host: "127.0.0.1",
      port: imap.port(),
      user: DORA.uid,
      password: DORA.password,
    });
    expect(read.login).toBe("OK");
    const copies = read.messages.filter((m) => m.raw.includes(token));
    expect(copies, "one copy in dora's INBOX").toHaveLength(1);
    const raw = copies[0]!.raw;
    // The sender's bytes intact (latin-1 view of UTF-8), behind the trace the servers added.
    expect(raw.endsWith(data), raw).toBe(true);
    expect(raw).toMatch(/^Return-Path: <sender@remote\.test>\r\nDelivered-To: dora@example\.org\r\n/);
    expect(raw).toMatch(/\r\nReceived: from client\.remote\.test .*\r\n\s+by s1\.example\.org/);
    // The MX's checks ran (mailauth, on this node, asking the loopback dnsmasq) and said so (RFC 8601).
    const results = headerFields(raw).find(([n]) => n === "Authentication-Results")?.[1] ?? "";
    expect(results, raw).toMatch(/^s1\.example\.org;.* dkim=none\b.* spf=none\b.* dmarc=none\b/);

    const pop = await python("pop3", {
      host: "127.0.0.1",
      port: pop3.port(),
      user: EMIL.uid,
      password: EMIL.password,
    });
    expect(pop.login).toMatch(/^\+OK/);
    const popped = pop.messages.filter((m) => m.includes(token));
    expect(popped).toHaveLength(1);
    expect(popped[0]!.endsWith(data)).toBe(true);
    expect(pop.uidl).toHaveLength(pop.messages.length);

    // SIGTERM drains each service to exit 0; nothing went to stderr (no crash, no warning).
    for (const s of services) {
      expect({ service: s.name, exit: await stop(s.proc, "SIGTERM") }).toEqual({
        service: s.name,
        exit: { code: 0, signal: null },
      });
      expect({ service: s.name, stderr: s.proc.stderr() }).toEqual({ service: s.name, stderr: "" });
      expect(s.proc.lines.filter((line) => line.level === "fatal" || line.level === "error")).toEqual([]);
    }
  });
});
