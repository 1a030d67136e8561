/**
 * Test harness for the IMAP server: the real Maildir++ store in a temp dir,
 * a Directory (in-test accounts, or the real slapd-backed one), a self-signed
 * certificate, and a small transcript client for raw protocol tests.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import { type Logger, pino } from "pino";
import { Registry } from "prom-client";
import type { Account, Directory } from "../../src/directory/types.js";
import type { ImapLimits } from "../../src/imap/limits.js";
import { ImapServer } from "../../src/imap/server.js";
import { createMaildirStore } from "../../src/store/index.js";
import type { MailStore } from "../../src/store/types.js";
import { makeCertificate } from "../support/tls.js";

export const USERS: Record<string, { password: string; quotaBytes?: number }> = {
  alice: { password: "alice-secret-1", quotaBytes: 10 * 1024 ** 2 },
  bob: { password: "bob-secret-2" },
  small: { password: "small-secret-3", quotaBytes: 2000 },
};

/** Accounts kept in memory; for tests that are not about LDAP. */
export function memoryDirectory(): Directory {
  const account = (uid: string): Account | null => {
    const u = USERS[uid];
    if (!u) return null;
    const a: Account = {
      uid,
      dn: `uid=${uid},ou=people,dc=example,dc=org`,
      mail: `${uid}@example.org`,
      addresses: [`${uid}@example.org`],
    };
    if (u.quotaBytes !== undefined) a.quotaBytes = u.quotaBytes;
    return a;
  };
  return {
    async findByAddress(address) {
      return account(address.split("@")[0]!);
    },
    async findByLogin(login) {
      return account(login.split("@")[0]!);
    },
    async authenticate(login, password) {
      const uid = login.split("@")[0]!;
      return USERS[uid]?.password === password ? account(uid) : null;
    },
    async close() {},
  };
}

export const DEFAULT_LIMITS: ImapLimits = {
  maxLineBytes: 8192,
  maxLiteralBytes: 1024 * 1024,
  maxBadCommands: 5,
  idleTimeoutMs: 30 * 60_000,
  maxConnectionsPerIp: 50,
  maxConnectionsPerUser: 20,
  authFailuresBeforeDelay: 3,
  authFailureDelayMs: 300,
};

export interface TestServer {
  port: number;
  tlsPort: number;
  root: string;
  store: MailStore;
  server: ImapServer;
  certFile: string;
  stop(): Promise<void>;
}

let certCache: { key: Buffer; cert: Buffer; certFile: string } | undefined;

export async function selfSigned(): Promise<{ key: Buffer; cert: Buffer; certFile: string }> {
  if (certCache) return certCache;
  const { certFile, keyFile } = await makeCertificate(await mkdtemp(join(tmpdir(), "imap-cert-")));
  certCache = { key: await readFile(keyFile), cert: await readFile(certFile), certFile };
  return certCache;
}

export async function startServer(
  options: {
    limits?: Partial<ImapLimits>;
    loginDisabledWithoutTls?: boolean;
    directory?: Directory;
    logger?: Logger;
    /** An existing store root (a restart on the same Maildir); left in place by stop(). */
    root?: string;
  } = {},
): Promise<TestServer> {
  const root = options.root ?? (await mkdtemp(join(tmpdir(), "imap-store-")));
  const store = createMaildirStore({ root, fsync: false, defaultQuotaBytes: 50 * 1024 ** 2 });
  const cert = await selfSigned();
  const server = new ImapServer({
    directory: options.directory ?? memoryDirectory(),
    store,
    logger: options.logger ?? pino({ level: process.env.IMAP_TEST_LOG ?? "silent" }),
    limits: { ...DEFAULT_LIMITS, ...options.limits },
    tls: { key: cert.key, cert: cert.cert },
    loginDisabledWithoutTls: options.loginDisabledWithoutTls ?? false,
    metrics: new Registry(),
  });
  const plain = await server.listen("127.0.0.1:0", false);
  const secure = await server.listen("127.0.0.1:0", true);
  return {
    port: Number(plain.split(":").pop()),
    tlsPort: Number(secure.split(":").pop()),
    root,
    store,
    server,
    certFile: cert.certFile,
    async stop() {
      await server.drain(1000);
      await store.close();
      if (!options.root) await rm(root, { recursive: true, force: true });
    },
  };
}

/** A raw protocol client: write lines, read until a tagged reply. */
export class Transcript {
  private buf = Buffer.alloc(0);
  private waiters: Array<() => void> = [];
  closed = false;
  private constructor(public socket: net.Socket | tls.TLSSocket) {
    this.hook(socket);
  }

  private hook(socket: net.Socket): void {
    socket.on("data", (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.wake();
    });
    socket.on("close", () => {
      this.closed = true;
      this.wake();
    });
    socket.on("error", () => undefined);
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  static async connect(port: number, secure = false): Promise<Transcript> {
    const socket = secure
      ? tls.connect({ port, host: "127.0.0.1", rejectUnauthorized: false })
      : net.connect({ port, host: "127.0.0.1" });
    await new Promise<void>((resolve, reject) => {
      socket.once(secure ? "secureConnect" : "connect", () => resolve());
      socket.once("error", reject);
    });
    const t = new Transcript(socket);
    await t.readLine();
    return t;
  }

  send(data: string | Buffer): void {
    this.socket.write(data);
  }

  /** Waits for `pattern` in the data received so far (not consumed before it); returns all text up to and including the match. */
  async until(pattern: RegExp, timeoutMs = 5000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const text = this.buf.toString("latin1");
      const m = pattern.exec(text);
      if (m) {
        const end = m.index + m[0].length;
        this.buf = this.buf.subarray(Buffer.byteLength(text.slice(0, end), "latin1"));
        return text.slice(0, end);
      }
      if (this.closed)
        throw new Error(`connection closed while waiting for ${pattern}; got ${JSON.stringify(text)}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timeout waiting for ${pattern}; got ${JSON.stringify(text)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  readLine(): Promise<string> {
    return this.until(/\r\n/);
  }

  /** Sends "tag command" and returns everything up to the tagged reply line. */
  async cmd(tag: string, command: string, timeoutMs = 5000): Promise<string> {
    this.send(`${tag} ${command}\r\n`);
    return this.until(new RegExp(`(^|\\r\\n)${tag} (OK|NO|BAD)[^\\r]*\\r\\n`), timeoutMs);
  }

  pending(): string {
    return this.buf.toString("latin1");
  }

  async waitClosed(timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed) {
      if (Date.now() > deadline) throw new Error("connection not closed");
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  close(): void {
    this.socket.destroy();
  }

  /** Replaces the socket (after STARTTLS or COMPRESS). */
  upgrade(socket: net.Socket | tls.TLSSocket): void {
    this.socket = socket;
    this.buf = Buffer.alloc(0);
    this.hook(socket);
  }
}

export const FIXTURES = new URL("./fixtures/", import.meta.url);

export async function fixture(name: string): Promise<Buffer> {
  const raw = await readFile(new URL(name, FIXTURES));
  // fixtures are stored with LF; messages on the wire and in the store use CRLF
  return Buffer.from(raw.toString("latin1").replace(/\r?\n/g, "\r\n"), "latin1");
}
