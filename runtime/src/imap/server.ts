/**
 * The IMAP listeners: plain (143, STARTTLS) and implicit TLS (993, RFC 8314),
 * connection limits per client address and per account, auth-failure
 * bookkeeping, and the sessions' shared dependencies. The limits are this
 * process's (LocalConnectionLimits) or, with imap.workers > 1, the host's,
 * kept by the cluster primary (cluster/limits.ts).
 */
import net from "node:net";
import tls from "node:tls";
import type { Logger } from "pino";
import { Counter, Gauge, type Registry } from "prom-client";
import { type ConnectionLimits, LocalConnectionLimits } from "../cluster/limits.js";
import { parseListenAddress } from "../config/load.js";
import type { Account, Directory } from "../directory/types.js";
import type { TlsMaterial } from "../service.js";
import type { MailStore, UserStore } from "../store/types.js";
import type { ImapLimits } from "./limits.js";
import { Session, type SessionServer } from "./session.js";

export interface ImapServerOptions {
  directory: Directory;
  store: MailStore;
  logger: Logger;
  limits: ImapLimits;
  tls?: TlsMaterial | undefined;
  loginDisabledWithoutTls: boolean;
  metrics?: Registry | undefined;
  /** Where connections per address and account and failed logins are counted; default: this process. */
  connectionLimits?: ConnectionLimits | undefined;
}

/** How long failed logins from an address are remembered. */
export const AUTH_FAILURE_WINDOW_MS = 15 * 60_000;

function metric<T>(registry: Registry, name: string, make: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? make();
}

export class ImapServer implements SessionServer {
  readonly log: Logger;
  readonly limits: ImapLimits;
  readonly tls: tls.SecureContext | undefined;
  readonly loginDisabledWithoutTls: boolean;
  readonly metrics?: SessionServer["metrics"];
  private readonly servers: net.Server[] = [];
  private readonly sessions = new Set<Session>();
  private readonly counted: ConnectionLimits;
  private draining = false;
  private readonly gauge: Gauge | undefined;

  constructor(private readonly options: ImapServerOptions) {
    this.log = options.logger;
    this.limits = options.limits;
    this.loginDisabledWithoutTls = options.loginDisabledWithoutTls;
    this.counted =
      options.connectionLimits ??
      new LocalConnectionLimits({
        maxConnectionsPerIp: options.limits.maxConnectionsPerIp,
        maxConnectionsPerUser: options.limits.maxConnectionsPerUser,
        authFailureWindowMs: AUTH_FAILURE_WINDOW_MS,
      });
    this.tls = options.tls
      ? tls.createSecureContext({ key: options.tls.key, cert: options.tls.cert })
      : undefined;
    const reg = options.metrics;
    if (reg) {
      this.gauge = metric(
        reg,
        "mailinfra_imap_connections",
        () =>
          new Gauge({ name: "mailinfra_imap_connections", help: "Open IMAP connections", registers: [reg] }),
      );
      const commands = metric(
        reg,
        "mailinfra_imap_commands_total",
        () =>
          new Counter({
            name: "mailinfra_imap_commands_total",
            help: "IMAP commands by verb and result",
            labelNames: ["command", "status"],
            registers: [reg],
          }),
      );
      this.metrics = { command: (name, status) => commands.inc({ command: name, status }) };
    }
  }

  /** Starts a listener; resolves to the bound "host:port". */
  async listen(address: string, implicitTls: boolean): Promise<string> {
    const { host = "0.0.0.0", port } = parseListenAddress(address);
    if (implicitTls && !this.tls)
      throw new Error("imap.tlsListen needs the tls section (certificate and key)");
    const server = implicitTls
      ? tls.createServer({ key: this.options.tls!.key, cert: this.options.tls!.cert }, (socket) =>
          this.accept(socket, true),
        )
      : net.createServer((socket) => this.accept(socket, false));
    server.on("tlsClientError", (err) => this.log.debug({ err: err.message }, "TLS handshake failed"));
    server.maxConnections = 1_000_000;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ host, port, backlog: 4096 }, () => {
        server.off("error", reject);
        resolve();
      });
    });
    this.servers.push(server);
    const a = server.address() as net.AddressInfo;
    return a.family === "IPv6" ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
  }

  addresses(): string[] {
    return this.servers.map((s) => {
      const a = s.address() as net.AddressInfo;
      return a.family === "IPv6" ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
    });
  }

  private accept(socket: net.Socket, secure: boolean): void {
    const ip = socket.remoteAddress ?? "unknown";
    socket.on("error", () => undefined);
    // the client's first bytes wait in the socket until the session reads them
    void this.counted.claim("ip", ip).then((ok) => {
      if (!ok) {
        this.log.info(
          { remote: ip, limit: this.limits.maxConnectionsPerIp },
          "too many connections from address",
        );
        socket.end("* BYE [UNAVAILABLE] Too many connections from your address\r\n");
        setTimeout(() => socket.destroy(), 2000).unref();
        return;
      }
      if (socket.destroyed || this.draining) {
        // gone while the count was asked, or the server stopped meanwhile
        this.counted.release("ip", ip);
        if (this.draining) socket.end("* BYE [UNAVAILABLE] Server shutting down\r\n");
        return;
      }
      socket.once("close", () => this.counted.release("ip", ip));
      const session = new Session(socket, this, ip, secure);
      this.sessions.add(session);
      this.gauge?.inc();
      session.start();
    });
  }

  authenticate(login: string, password: string): Promise<Account | null> {
    return this.options.directory.authenticate(login, password);
  }

  openStore(account: Account): Promise<UserStore> {
    return this.options.store.open(
      account.uid,
      account.quotaBytes !== undefined ? { quotaBytes: account.quotaBytes } : undefined,
    );
  }

  claimUser(uid: string): Promise<boolean> {
    return this.counted.claim("user", uid);
  }

  releaseUser(uid: string): void {
    this.counted.release("user", uid);
  }

  authFailures(ip: string, add: boolean): Promise<number> {
    return this.counted.authFailures(ip, add);
  }

  closed(session: Session): void {
    if (this.sessions.delete(session)) this.gauge?.dec();
  }

  get connectionCount(): number {
    return this.sessions.size;
  }

  /** Stops accepting, says BYE to every session, waits up to timeoutMs, then cuts the rest. */
  async drain(timeoutMs: number): Promise<void> {
    this.draining = true;
    // close() only stops accepting here; its callback would wait for every session
    for (const s of this.servers) s.close();
    for (const s of this.sessions) s.drain();
    const deadline = Date.now() + timeoutMs;
    while (this.sessions.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
    for (const s of this.sessions) s.destroy();
  }
}
