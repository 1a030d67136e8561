/**
 * The real peers of the filter tests, Debian's packages started on loopback
 * with free ports and temp dirs, each stopped by its PID:
 * dnsmasq (the test DNS: blocklist zone, SPF, DKIM keys, DMARC), spamd, clamd.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { createSocket } from "node:dgram";
import { promises as dnsPromises } from "node:dns";
import { readFileSync } from "node:fs";
import { chmod, copyFile, mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { type AddressInfo, connect, createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { RuntimeConfigSchema } from "../../src/config/schema.js";

export const silentLogger = pino({ level: "silent" });

/** A port free for both UDP and TCP on 127.0.0.1 (dnsmasq needs both). */
export async function freePort(): Promise<number> {
  for (let i = 0; i < 20; i++) {
    const udp = createSocket("udp4");
    const port = await new Promise<number>((resolve, reject) => {
      udp.once("error", reject);
      udp.bind(0, "127.0.0.1", () => resolve(udp.address().port));
    });
    const tcpFree = await new Promise<boolean>((resolve) => {
      const s = createServer();
      s.once("error", () => resolve(false));
      s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)));
    });
    await new Promise<void>((r) => udp.close(() => r()));
    if (tcpFree) return port;
  }
  throw new Error("no free port");
}

export interface Daemon {
  port: number;
  pid: number;
  stop(): Promise<void>;
}

function stopper(child: ChildProcess, dir: string): () => Promise<void> {
  return async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((r) => child.once("exit", () => r()));
      process.kill(child.pid!, "SIGTERM");
      const t = setTimeout(() => {
        if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, "SIGKILL");
      }, 5000);
      await exited;
      clearTimeout(t);
    }
    await rm(dir, { recursive: true, force: true });
  };
}

async function waitFor(
  what: string,
  child: ChildProcess,
  log: () => string,
  probe: () => Promise<boolean>,
  ms: number,
) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${what} exited (${child.exitCode}): ${log().slice(-2000)}`);
    if (await probe().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} did not start in ${ms} ms: ${log().slice(-2000)}`);
}

function capture(child: ChildProcess): () => string {
  let out = "";
  child.stdout?.on("data", (c: Buffer) => {
    out += c.toString();
  });
  child.stderr?.on("data", (c: Buffer) => {
    out += c.toString();
  });
  return () => out;
}

export interface DnsRecords {
  /** name → IPv4 (exact name: --host-record). */
  a?: Record<string, string>;
  /** name → strings of one TXT record (long values are split into 255-byte strings). */
  txt?: Record<string, string>;
}

/** Splits a TXT value into RFC 1035 character-strings of at most 255 bytes. */
export function txtStrings(value: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < value.length; i += 250) out.push(value.slice(i, i + 250));
  return out;
}

/** dnsmasq authoritative-ish for *.test (NXDOMAIN for unknown names, RFC 6761 .test). */
export async function startDnsmasq(records: DnsRecords): Promise<Daemon & { server: string }> {
  const dir = await mkdtemp(join(tmpdir(), "mi-dnsmasq-"));
  const port = await freePort();
  const args = [
    "--no-daemon",
    `--port=${port}`,
    "--listen-address=127.0.0.1",
    "--bind-interfaces",
    "--no-resolv",
    "--no-hosts",
    "--conf-file=/dev/null",
    "--local=/test/",
    "--cache-size=0",
    "--host-record=ready.test,127.0.0.1",
  ];
  for (const [name, ip] of Object.entries(records.a ?? {})) args.push(`--host-record=${name},${ip}`);
  for (const [name, value] of Object.entries(records.txt ?? {})) {
    // On dnsmasq's command line a comma separates character-strings and quotes are literal.
    if (value.includes(",")) throw new Error(`TXT value for ${name} has a comma: ${value}`);
    args.push(`--txt-record=${name},${txtStrings(value).join(",")}`);
  }
  const child = spawn("dnsmasq", args, { stdio: ["ignore", "pipe", "pipe"] });
  const log = capture(child);
  const server = `127.0.0.1:${port}`;
  const r = new dnsPromises.Resolver({ timeout: 200, tries: 1 });
  r.setServers([server]);
  await waitFor("dnsmasq", child, log, async () => (await r.resolve4("ready.test")).length > 0, 10_000);
  return { port, pid: child.pid!, server, stop: stopper(child, dir) };
}

function tcpProbe(port: number, send: string, expect: RegExp): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: "127.0.0.1", port });
    let got = "";
    s.setTimeout(1000, () => {
      s.destroy();
      resolve(false);
    });
    s.on("connect", () => s.write(send));
    s.on("data", (c) => {
      got += c.toString();
      if (expect.test(got)) {
        s.destroy();
        resolve(true);
      }
    });
    s.on("error", () => resolve(false));
    s.on("close", () => resolve(expect.test(got)));
  });
}

/**
 * spamd with the rules shipped in the Debian package (/usr/share/spamassassin;
 * sa-update cannot run here), -L so no network test is tried, a temp site
 * config (the package's .pre files, which load the plugins) and home.
 */
export async function startSpamd(opts: { maxChildren?: number } = {}): Promise<Daemon> {
  const dir = await mkdtemp(join(tmpdir(), "mi-spamd-"));
  // spamd started as root reads its config as "nobody": the temp dir must be world-readable.
  await chmod(dir, 0o755);
  for (const f of await readdir("/etc/spamassassin")) {
    if (f.endsWith(".pre")) await copyFile(join("/etc/spamassassin", f), join(dir, f));
  }
  await writeFile(join(dir, "local.cf"), "required_score 5.0\nuse_bayes 0\n");
  const port = await freePort();
  const child = spawn(
    "spamd",
    [
      `--listen=127.0.0.1:${port}`,
      `--pidfile=${join(dir, "spamd.pid")}`,
      `--max-children=${opts.maxChildren ?? 1}`,
      "--syslog=stderr",
      "-L",
      `--siteconfigpath=${dir}`,
      `--helper-home-dir=${dir}`,
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  const log = capture(child);
  await waitFor("spamd", child, log, () => tcpProbe(port, "PING SPAMC/1.5\r\n\r\n", /PONG/), 90_000);
  return { port, pid: child.pid!, stop: stopper(child, dir) };
}

export const EICAR = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/**
 * clamd with a one-signature database: the MD5 of the EICAR test file (.hdb).
 * In production the database comes from freshclam (no network here); clamd
 * itself (MIME decoding, hashing each attachment) is the real one.
 */
export async function startClamd(opts: { streamMaxLength?: string } = {}): Promise<Daemon> {
  const dir = await mkdtemp(join(tmpdir(), "mi-clamd-"));
  const db = join(dir, "db");
  await mkdir(db);
  const md5 = createHash("md5").update(EICAR).digest("hex");
  await writeFile(join(db, "test.hdb"), `${md5}:${EICAR.length}:Eicar-Test-Signature\n`);
  const port = await freePort();
  const conf = join(dir, "clamd.conf");
  await writeFile(
    conf,
    [
      `TCPSocket ${port}`,
      "TCPAddr 127.0.0.1",
      "Foreground yes",
      `DatabaseDirectory ${db}`,
      `PidFile ${join(dir, "clamd.pid")}`,
      `TemporaryDirectory ${dir}`,
      `LogFile ${join(dir, "clamd.log")}`,
      `StreamMaxLength ${opts.streamMaxLength ?? "10M"}`,
      "SelfCheck 3600",
      "",
    ].join("\n"),
  );
  const child = spawn("clamd", ["-c", conf], { stdio: ["ignore", "pipe", "pipe"] });
  const out = capture(child);
  const log = () => {
    try {
      return out() + readFileSync(join(dir, "clamd.log"), "utf8");
    } catch {
      return out();
    }
  };
  await waitFor("clamd", child, log, () => tcpProbe(port, "zPING\0", /PONG/), 60_000);
  return { port, pid: child.pid!, stop: stopper(child, dir) };
}

/** A TCP server that accepts and never answers (scanner timeouts). */
export async function startSilentServer(): Promise<{ port: number; stop(): Promise<void> }> {
  const sockets = new Set<Socket>();
  // allowHalfOpen: our client's half-close must not close the server's side (it never answers).
  const server = createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on("error", () => {});
    s.resume();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    stop: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

/** A UDP socket that swallows DNS queries (DNS timeouts). */
export async function startSilentDns(): Promise<{ server: string; stop(): Promise<void> }> {
  const udp = createSocket("udp4");
  await new Promise<void>((r) => udp.bind(0, "127.0.0.1", () => r()));
  return {
    server: `127.0.0.1:${udp.address().port}`,
    stop: () => new Promise<void>((r) => udp.close(() => r())),
  };
}

/** The filter section as runtime.yaml would give it (defaults applied by the schema). */
export function filterConfig(
  section: Record<string, unknown> = {},
): import("../../src/filter/context.js").FilterConfig {
  return RuntimeConfigSchema.shape.filter.parse(section);
}

/** A plain CRLF message. */
export function message(headers: string[], body: string): Buffer {
  return Buffer.from(`${headers.join("\r\n")}\r\n\r\n${body.replace(/\r?\n/g, "\r\n")}`);
}
