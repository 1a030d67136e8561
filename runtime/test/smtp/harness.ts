/**
 * Shared pieces of the SMTP and queue tests: a real slapd with our accounts,
 * LMTP and SMTP sinks built on smtp-server (the runtime's own LMTP service
 * replaces the LMTP sink once it exists), a throwaway certificate, dnsmasq for
 * MX records, and the clients nobody here wrote (swaks, python3 smtplib).
 * Everything listens on loopback, on ports the kernel picks; every process is
 * stopped by its PID.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import pino, { type Logger } from "pino";
import { Registry } from "prom-client";
import { SMTPServer, type SMTPServerSession } from "smtp-server";
import { type RuntimeConfig, RuntimeConfigSchema } from "../../src/config/schema.js";
import { createDirectory } from "../../src/directory/index.js";
import type { Directory } from "../../src/directory/types.js";
import type { RunningService, TlsMaterial } from "../../src/service.js";
import { installEnhancedCodePassthrough } from "../../src/smtp/replies.js";
import { type SmtpServiceOptions, startSmtp } from "../../src/smtp/service.js";
import { type Slapd, startSlapd, type TestAccount } from "../support/slapd.js";

const run = promisify(execFile);

export const DOMAIN = "example.org";

/** Accounts for the SMTP tests: no mailHost = the queue's default LMTP host. */
export const SMTP_ACCOUNTS: TestAccount[] = [
  { uid: "alice", mail: "alice@example.org", password: "alice-pw-1", aliases: ["A.Liddell@example.org"] },
  { uid: "bob", mail: "bob@example.org", password: "bob-pw-2", aliases: ["robert@example.net"] },
  // Lives on the second store (shard): LMTP goes to its mailHost.
  { uid: "dave", mail: "dave@example.org", password: "dave-pw-3", mailHost: "127.0.0.2" },
  // Forwarded inside and outside.
  { uid: "erin", mail: "erin@example.org", password: "erin-pw-4", routingAddress: "alice@example.org" },
  { uid: "carol", mail: "carol@example.org", password: "carol-pw-5", routingAddress: "carol@remote.test" },
  // Replies from the LMTP sink by local part: tempfail* → 451, reject* → 550 after DATA.
  { uid: "tempfail", mail: "tempfail@example.org", password: "x-pw-6" },
  { uid: "reject", mail: "reject@example.org", password: "x-pw-7" },
];

export async function freePort(host = "127.0.0.1"): Promise<number> {
  const server = createServer();
  server.listen(0, host);
  await once(server, "listening");
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

export interface Received {
  from: string;
  to: string[];
  data: Buffer;
  secure: boolean;
}

export interface Sink {
  host: string;
  port: number;
  messages: Received[];
  /** Per recipient (lower case) → reply; otherwise the local-part rules. */
  replies: Map<string, { code: number; text: string }>;
  /** Highest number of simultaneous sessions seen. */
  maxConcurrent: number;
  /** Delay before answering DATA (concurrency tests). */
  delayMs: number;
  close(): Promise<void>;
  waitFor(count: number, timeoutMs?: number): Promise<Received[]>;
}

/** An LMTP (RFC 2033) or SMTP server that records what it gets. */
export async function startSink(options: {
  lmtp: boolean;
  host?: string;
  port?: number;
  tls?: TlsMaterial;
}): Promise<Sink> {
  const host = options.host ?? "127.0.0.1";
  const messages: Received[] = [];
  const replies = new Map<string, { code: number; text: string }>();
  const replyFor = (rcpt: string) => {
    const set = replies.get(rcpt.toLowerCase());
    if (set) return set;
    if (rcpt.startsWith("tempfail")) return { code: 451, text: "4.2.0 mailbox busy, try later" };
    if (rcpt.startsWith("reject")) return { code: 550, text: "5.2.1 mailbox disabled" };
    return null;
  };
  const toError = (r: { code: number; text: string }) =>
    Object.assign(new Error(r.text), { responseCode: r.code });
  let current = 0;
  const server = new SMTPServer({
    onConnect(_session, callback) {
      current += 1;
      sink.maxConcurrent = Math.max(sink.maxConcurrent, current);
      callback();
    },
    onClose() {
      current -= 1;
    },
    lmtp: options.lmtp,
    // Like Dovecot's LMTP and Postfix: replies carry RFC 3463 codes.
    hideENHANCEDSTATUSCODES: false,
    authOptional: true,
    disabledCommands: ["AUTH"],
    hideSTARTTLS: !options.tls,
    ...(options.tls ? { key: options.tls.key, cert: options.tls.cert } : {}),
    disableReverseLookup: true,
    logger: false,
    onData(stream, session: SMTPServerSession, callback) {
      const chunks: Buffer[] = [];
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("end", async () => {
        if (sink.delayMs > 0) await new Promise((r) => setTimeout(r, sink.delayMs));
        const to = session.envelope.rcptTo.map((r) => r.address);
        const data = Buffer.concat(chunks);
        const results = to.map((rcpt) => {
          const r = replyFor(rcpt);
          return r ? toError(r) : "2.0.0 delivered";
        });
        const accepted = to.filter((_, i) => typeof results[i] === "string");
        if (accepted.length > 0) {
          messages.push({
            from: session.envelope.mailFrom ? session.envelope.mailFrom.address : "",
            to: accepted,
            data,
            secure: session.secure,
          });
        }
        if (options.lmtp) callback(null, results);
        else {
          const first = to.map(replyFor).find((r) => r);
          callback(first ? toError(first) : null, first ? undefined : "2.0.0 queued");
        }
      });
    },
  });
  // Its replies carry their own RFC 3463 codes ("4.2.0 mailbox busy"), sent as they are.
  installEnhancedCodePassthrough(server);
  // A client that goes away mid-session (a killed service's pooled connections: ECONNRESET) is
  // routine for a store; smtp-server reports it here, and without a listener it would be thrown.
  server.on("error", () => undefined);
  await new Promise<void>((resolve, reject) => {
    server.server.once("error", reject);
    server.listen(options.port ?? 0, host, () => resolve());
  });
  const address = server.server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  const sink: Sink = {
    host,
    port,
    messages,
    replies,
    maxConcurrent: 0,
    delayMs: 0,
    close: () => new Promise<void>((r) => server.close(() => r())),
    async waitFor(count, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      while (messages.length < count) {
        if (Date.now() > deadline) throw new Error(`sink got ${messages.length} of ${count} messages`);
        await new Promise((r) => setTimeout(r, 50));
      }
      return messages;
    },
  };
  return sink;
}

export async function makeCert(dir: string, cn = "mx.example.org"): Promise<TlsMaterial> {
  const key = join(dir, "key.pem");
  const cert = join(dir, "cert.pem");
  await run("openssl", [
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    key,
    "-out",
    cert,
    "-days",
    "2",
    "-subj",
    `/CN=${cn}`,
  ]);
  return { key: await readFile(key), cert: await readFile(cert) };
}

export interface Dnsmasq {
  port: number;
  stop(): Promise<void>;
}

/** Debian's dnsmasq serving only the records given (no upstream, no /etc/hosts). */
export async function startDnsmasq(args: string[]): Promise<Dnsmasq> {
  const dir = await mkdtemp(join(tmpdir(), "mailinfra-dnsmasq-"));
  const port = await freePort();
  const child: ChildProcess = spawn(
    "dnsmasq",
    [
      "--no-daemon",
      `--port=${port}`,
      "--listen-address=127.0.0.1",
      "--bind-interfaces",
      "--no-resolv",
      "--no-hosts",
      "--conf-file=/dev/null",
      `--pid-file=${join(dir, "pid")}`,
      ...args,
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  // Ready once it says so (it binds its socket before logging "started").
  const deadline = Date.now() + 10_000;
  while (!/started, version/.test(stderr)) {
    if (child.exitCode !== null) throw new Error(`dnsmasq exited: ${stderr}`);
    if (Date.now() > deadline) throw new Error(`dnsmasq did not start: ${stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    port,
    async stop() {
      if (child.pid && child.exitCode === null) {
        process.kill(child.pid, "SIGTERM");
        await once(child, "exit");
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface World {
  slapd: Slapd;
  directory: Directory;
  lmtp: Sink;
  /** Second store, on 127.0.0.2 with the same port (dave's mailHost). */
  lmtp2: Sink;
  tls: TlsMaterial;
  dir: string;
  stop(): Promise<void>;
}

export async function startWorld(): Promise<World> {
  const dir = await mkdtemp(join(tmpdir(), "mailinfra-smtp-"));
  const slapd = await startSlapd({ accounts: SMTP_ACCOUNTS });
  const directory = createDirectory(
    RuntimeConfigSchema.shape.ldap.unwrap().parse(slapd.ldapConfig({ cacheTtlSeconds: 0 })),
  );
  const lmtp = await startSink({ lmtp: true });
  const lmtp2 = await startSink({ lmtp: true, host: "127.0.0.2", port: lmtp.port });
  const tls = await makeCert(dir);
  return {
    slapd,
    directory,
    lmtp,
    lmtp2,
    tls,
    dir,
    async stop() {
      await directory.close();
      await lmtp.close();
      await lmtp2.close();
      await slapd.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface ConfigOptions {
  queueDir: string;
  lmtpPort: number;
  trustedNetworks?: string[];
  queue?: Record<string, unknown>;
  smtp?: Record<string, unknown>;
  filter?: Record<string, unknown>;
}

export function makeConfig(o: ConfigOptions): RuntimeConfig {
  return RuntimeConfigSchema.parse({
    host: { name: "mx.example.org", roles: ["mx", "relay"] },
    log: { level: "warn" },
    metrics: {},
    // The real pipeline, with the checks that need the outside world or judge the
    // test clients themselves (HELO "vm", 100 connections a minute) turned off;
    // filter-wiring.test.ts turns checks on.
    filter: o.filter ?? {
      dnsServers: ["127.0.0.1:9"],
      rate: { maxConnectionsPerMinute: 0, maxConcurrent: 0 },
      helo: { enabled: false },
      spf: { enabled: false },
      dkim: { enabled: false },
      dmarc: { enabled: false },
      arc: { enabled: false },
    },
    ldap: {
      uris: ["ldap://127.0.0.1:1"],
      baseDn: "dc=example,dc=org",
      bindDn: "cn=x",
      bindPasswordFile: "/dev/null",
    },
    smtp: {
      domains: [DOMAIN, "example.net"],
      mx: { listen: ["127.0.0.1:0"] },
      relay: {
        listen: ["127.0.0.1:0"],
        submissionListen: ["127.0.0.1:0"],
        trustedNetworks: o.trustedNetworks ?? ["127.0.0.2/32"],
      },
      reverseLookup: false,
      maxMessageBytes: 1024 * 1024,
      ...o.smtp,
    },
    queue: {
      dir: o.queueDir,
      lmtp: { host: "127.0.0.1", port: o.lmtpPort },
      retryInitialSeconds: 0.2,
      retryMaxSeconds: 1,
      scanIntervalSeconds: 0.5,
      connectTimeoutSeconds: 3,
      // Never the system's resolver in tests: nothing listens here, lookups fail fast (tests that need MX start dnsmasq).
      dnsServers: ["127.0.0.1:9"],
      socketTimeoutSeconds: 10,
      ...o.queue,
    },
  });
}

export interface Running {
  service: RunningService;
  mx: number;
  relay: number;
  submission: number;
  config: RuntimeConfig;
  metrics: Registry;
}

export async function startService(
  world: World,
  config: RuntimeConfig,
  options: SmtpServiceOptions = {},
  logger: Logger = pino({ level: process.env.SMTP_TEST_LOG ?? "silent" }),
): Promise<Running> {
  const metrics = new Registry();
  const service = await startSmtp(
    { config, logger, metrics, directory: world.directory, tls: world.tls },
    options,
  );
  const ports = service.addresses().map((a) => Number(a.slice(a.lastIndexOf(":") + 1)));
  return { service, mx: ports[0] ?? 0, relay: ports[1] ?? 0, submission: ports[2] ?? 0, config, metrics };
}

export interface SwaksResult {
  code: number;
  output: string;
}

/** swaks (Debian) with the given arguments; never throws on SMTP errors. */
export async function swaks(args: string[], password?: string): Promise<SwaksResult> {
  // Passwords go through the environment (swaks reads SWAKS_OPT_*), never the command line.
  const env = { ...process.env, ...(password ? { SWAKS_OPT_auth_password: password } : {}) };
  try {
    const { stdout, stderr } = await run("swaks", ["--timeout", "20", ...args], {
      maxBuffer: 16 * 1024 * 1024,
      env,
    });
    return { code: 0, output: stdout + stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === "number" ? e.code : -1, output: `${e.stdout ?? ""}${e.stderr ?? ""}` };
  }
}

/** Runs a python3 script (stdin) and returns stdout; rejects on a non-zero exit. */
export async function python(
  script: string,
  args: string[] = [],
  env: Record<string, string> = {},
): Promise<string> {
  const child = spawn("python3", ["-", ...args], {
    stdio: ["pipe", "pipe", "pipe"],
    env: { ...process.env, ...env },
  });
  let out = "";
  let err = "";
  child.stdout.on("data", (d: Buffer) => {
    out += d.toString();
  });
  child.stderr.on("data", (d: Buffer) => {
    err += d.toString();
  });
  child.stdin.end(script);
  const [code] = (await once(child, "exit")) as [number];
  if (code !== 0) throw new Error(`python3 exited ${code}: ${err}`);
  return out;
}

/** What a raw client sees: python3 socket, one write per element, each followed by reading the reply. */
export async function rawSession(
  port: number,
  sends: string[],
  options: { waitGreeting?: boolean } = {},
): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "mailinfra-raw-"));
  const file = join(dir, "sends.json");
  await writeFile(file, JSON.stringify(sends));
  const script = `
import socket, sys, json
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
sends = json.load(open(sys.argv[2]))
out = b""
def drain(first=3.0, quiet=0.15):
    # wait for a reply, then until the server has been quiet for a moment
    global out
    t = first
    while True:
        s.settimeout(t)
        try:
            d = s.recv(65536)
        except socket.timeout:
            return True
        except OSError:
            return False
        if not d:
            return False
        out += d
        t = quiet
if ${options.waitGreeting === false ? "False" : "True"}:
    drain()
for item in sends:
    try:
        s.sendall(item.encode("latin-1"))
    except OSError:
        break
    if not drain():
        break
sys.stdout.write(out.decode("latin-1"))
`;
  try {
    return await python(script, [String(port), file]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Per-client concurrency seen by a real client (python3 sockets): opens
 * `hold` + 1 connections from 127.0.0.1 and keeps those greeted with 220;
 * then one from `other` (another client address); then one held connection
 * says QUIT and closes, and two more are tried from 127.0.0.1 (the freed slot,
 * then the limit again). Returns each greeting's last line, in that order.
 */
export async function concurrencyProbe(port: number, hold: number, other = "127.0.0.3"): Promise<string[]> {
  const out = await python(
    `
import socket, sys, time
port, hold, other = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def connect(src):
    s = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(src, 0))
    f = s.makefile("rb")
    line = f.readline()
    while line[3:4] == b"-":
        line = f.readline()
    return s, line.decode().strip()
held = []
def attempt(src="127.0.0.1"):
    s, greeting = connect(src)
    print(greeting, flush=True)
    if greeting.startswith("220"):
        held.append(s)
    else:
        s.close()
for i in range(hold + 1):
    attempt()
attempt(other)
# one of the first client's sessions ends: the server frees its slot when the socket closes
first = held.pop(0)
first.sendall(b"QUIT\\r\\n")
first.makefile("rb").read()
first.close()
time.sleep(0.5)
attempt()
attempt()
for s in held:
    s.close()
`,
    [String(port), String(hold), other],
  );
  return out.trim().split("\n");
}
