// Shared set-up for the POP3 tests: a real slapd, a Maildir store, a
// self-signed certificate made by openssl, the pop3 service on free ports,
// and a raw line-level client for transcripts.
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino, { type Logger } from "pino";
import { Registry } from "prom-client";
import { RuntimeConfigSchema } from "../../src/config/schema.js";
import { createDirectory } from "../../src/directory/index.js";
import type { Directory } from "../../src/directory/types.js";
import type { Pop3Limits } from "../../src/pop3/limits.js";
import { startPop3 } from "../../src/pop3/service.js";
import type { RunningService } from "../../src/service.js";
import { createMaildirStore } from "../../src/store/index.js";
import type { MailStore } from "../../src/store/types.js";
import { type Slapd, startSlapd, TEST_ACCOUNTS } from "../support/slapd.js";
import { makeCertificate } from "../support/tls.js";

export interface Pop3Harness {
  ldap: Slapd;
  directory: Directory;
  store: MailStore;
  root: string;
  certFile: string;
  tmp: string;
  start(options?: {
    limits?: Record<string, number>;
    /** More keys of the runtime.yaml `pop3` section. */
    pop3?: Record<string, unknown>;
    overrides?: Partial<Pop3Limits>;
    loginDisabledWithoutTls?: boolean;
    tls?: boolean;
    /** Another store instance on the same root (a restarted process, or the other store node). */
    store?: MailStore;
    logger?: Logger;
  }): Promise<{ port: number; tlsPort: number; service: RunningService; metrics: Registry }>;
  stop(): Promise<void>;
}

export async function harness(): Promise<Pop3Harness> {
  const ldap = await startSlapd({ accounts: TEST_ACCOUNTS });
  const directory = createDirectory({ ...ldap.ldapConfig(), cacheTtlSeconds: 0 });
  const tmp = await mkdtemp(join(tmpdir(), "pop3-"));
  const root = join(tmp, "mail");
  const store = createMaildirStore({ root, fsync: false, defaultQuotaBytes: 1e9 });
  const { certFile, keyFile } = await makeCertificate(tmp);
  const tls = { cert: await readFile(certFile), key: await readFile(keyFile) };
  const services: RunningService[] = [];
  return {
    ldap,
    directory,
    store,
    root,
    certFile,
    tmp,
    async start(options = {}) {
      const config = RuntimeConfigSchema.parse({
        host: { name: "store.test", roles: ["store"] },
        ldap: ldap.ldapConfig(),
        store: { root, fsync: false, defaultQuotaBytes: 1e9 },
        tls: { certFile, keyFile },
        pop3: {
          listen: ["127.0.0.1:0"],
          tlsListen: options.tls === false ? [] : ["127.0.0.1:0"],
          loginDisabledWithoutTls: options.loginDisabledWithoutTls ?? false,
          limits: options.limits ?? {},
          ...options.pop3,
        },
      });
      const metrics = new Registry();
      const service = await startPop3(
        {
          config,
          logger: options.logger ?? pino({ level: "silent" }),
          metrics,
          directory,
          store: options.store ?? store,
          ...(options.tls === false ? {} : { tls }),
        },
        options.overrides ? { limits: options.overrides } : {},
      );
      services.push(service);
      const ports = service.addresses().map((a) => Number(a.split(":").pop()));
      return { port: ports[0] as number, tlsPort: ports[1] ?? 0, service, metrics };
    },
    async stop() {
      for (const s of services) await s.drain(500);
      await store.close();
      await directory.close();
      await ldap.stop();
      await rm(tmp, { recursive: true, force: true });
    },
  };
}

/** A raw POP3 client for transcripts: send lines, read lines. */
export class Conversation {
  private buffer = "";
  private waiters: Array<() => void> = [];
  closed = false;
  readonly socket: Socket;

  constructor(port: number) {
    this.socket = connect(port, "127.0.0.1");
    this.socket.on("data", (d) => {
      this.buffer += d.toString("latin1");
      this.wake();
    });
    this.socket.on("close", () => {
      this.closed = true;
      this.wake();
    });
    this.socket.on("error", () => undefined);
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  async line(timeoutMs = 5000): Promise<string | null> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.buffer.indexOf("\r\n");
      if (i >= 0) {
        const line = this.buffer.slice(0, i);
        this.buffer = this.buffer.slice(i + 2);
        return line;
      }
      if (this.closed) return null;
      if (Date.now() > deadline)
        throw new Error(`no line within ${timeoutMs} ms; buffer ${JSON.stringify(this.buffer)}`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
  }

  /** Lines of a multi-line response up to (not including) ".". */
  async multi(): Promise<string[]> {
    const out: string[] = [];
    for (;;) {
      const l = await this.line();
      if (l === null || l === ".") return out;
      out.push(l);
    }
  }

  send(line: string | Buffer): void {
    this.socket.write(typeof line === "string" ? `${line}\r\n` : line);
  }

  async cmd(line: string): Promise<string | null> {
    this.send(line);
    return this.line();
  }

  async waitClosed(timeoutMs = 5000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    return this.closed;
  }

  close(): void {
    this.socket.destroy();
  }
}
