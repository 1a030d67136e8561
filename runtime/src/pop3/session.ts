/**
 * One POP3 connection (RFC 1939): the AUTHORIZATION → TRANSACTION → UPDATE
 * states, the maildrop (INBOX) locked for the session, messages marked
 * deleted until QUIT. Commands (commands/*.ts) act on it through the methods
 * below; only this file touches the socket.
 */
import type { Socket } from "node:net";
import { type SecureContext, TLSSocket } from "node:tls";
import type { Logger } from "pino";
import type { Account, Directory } from "../directory/types.js";
import { DirectoryUnavailableError } from "../directory/types.js";
import type { MailboxSession, MailStore, MessageMeta } from "../store/types.js";
import { StoreError } from "../store/types.js";
import type { AuthThrottle } from "./auth-throttle.js";
import { COMMANDS } from "./commands/index.js";
import { type Pop3Limits, TLS_HANDSHAKE_TIMEOUT_MS } from "./limits.js";
import { LineReader, parseCommand, statusLine } from "./wire.js";

export type Pop3State = "AUTHORIZATION" | "TRANSACTION" | "UPDATE";

export interface Pop3ServerContext {
  hostname: string;
  directory: Directory;
  store: MailStore;
  limits: Pop3Limits;
  throttle: AuthThrottle;
  /** Sessions per login name, shared by the listeners (limits.maxConnectionsPerUser). */
  perUser: Map<string, number>;
  /** For STLS; absent → STLS not offered. */
  secureContext?: SecureContext;
  /** RFC 2595 §2.1-style: no USER/PASS/AUTH before TLS. */
  loginDisabledWithoutTls: boolean;
  /** Counts logins by result: ok, auth (wrong credentials), inuse, tempfail. */
  countLogin?: (result: "ok" | "auth" | "inuse" | "tempfail") => void;
}

export interface Pop3Message {
  meta: MessageMeta;
  deleted: boolean;
}

/** RFC 2449 §8 / RFC 3206 response codes. */
export type ResponseCode = "IN-USE" | "LOGIN-DELAY" | "AUTH" | "SYS/TEMP" | "SYS/PERM";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class Pop3Session {
  state: Pop3State = "AUTHORIZATION";
  secure: boolean;
  /** The name given by USER, waiting for PASS. */
  pendingUser: string | null = null;
  account: Account | null = null;
  messages: Pop3Message[] = [];
  private socket: Socket;
  private reader: LineReader;
  private queue: Array<{ type: "line"; line: string } | { type: "overflow" }> = [];
  private busy = false;
  private closed = false;
  private badCommands = 0;
  private idleTimer: NodeJS.Timeout | null = null;
  private mailbox: MailboxSession | null = null;
  private releaseLock: (() => Promise<void>) | null = null;
  /** The login name whose per-account slot this session holds. */
  private userSlot: string | null = null;
  /** A SASL exchange waiting for the client's next line (AUTH without initial response). */
  continuation: ((line: string) => Promise<void>) | null = null;
  private readonly onData = (chunk: Buffer) => this.received(chunk);

  constructor(
    socket: Socket,
    readonly ctx: Pop3ServerContext,
    readonly log: Logger,
    readonly remoteAddress: string,
    implicitTls: boolean,
    private readonly onClosed: () => void,
  ) {
    this.socket = socket;
    this.secure = implicitTls;
    this.reader = new LineReader(ctx.limits.maxLineBytes);
    this.attach(socket);
    this.touch();
    this.write(statusLine(true, `${ctx.hostname} POP3 server ready`));
  }

  private attach(socket: Socket): void {
    socket.on("data", this.onData);
    socket.on("error", (err) => this.log.debug({ err }, "socket error"));
    socket.on("close", () => void this.cleanup());
  }

  private touch(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => {
      // RFC 1939 §3: the autologout timer closes without entering UPDATE.
      this.log.info("idle timeout");
      this.write(statusLine(false, "Autologout: idle for too long"));
      this.end();
    }, this.ctx.limits.idleTimeoutMs);
    this.idleTimer.unref();
  }

  private received(chunk: Buffer): void {
    this.touch();
    this.queue.push(...this.reader.push(chunk));
    void this.pump();
  }

  private async pump(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      while (this.queue.length > 0 && !this.closed) {
        const event = this.queue.shift()!;
        if (event.type === "overflow") {
          this.write(statusLine(false, `Line too long (at most ${this.ctx.limits.maxLineBytes} octets)`));
          this.end();
          return;
        }
        try {
          await this.handle(event.line);
        } catch (err) {
          // Never a crash, never internal text on the wire.
          this.log.error({ err }, "command failed");
          this.err("Internal error, try again later", "SYS/TEMP");
        }
      }
    } finally {
      this.busy = false;
    }
  }

  private async handle(line: string): Promise<void> {
    if (this.continuation) {
      const next = this.continuation;
      this.continuation = null;
      return next(line);
    }
    const parsed = parseCommand(line);
    if (!parsed) return this.bad("Unknown command");
    const command = COMMANDS.get(parsed.verb);
    if (!command) return this.bad("Unknown command");
    this.log.debug({ verb: parsed.verb }, "command");
    if (!command.states.includes(this.state)) return this.bad(`${parsed.verb} not allowed now`);
    if (parsed.args.length < command.minArgs || parsed.args.length > command.maxArgs) {
      return this.bad(`Wrong number of arguments for ${parsed.verb}`);
    }
    this.badCommands = 0;
    await command.handle(this, parsed);
  }

  /** A protocol error: counts toward the limit of bad commands in a row. */
  bad(text: string): void {
    this.badCommands += 1;
    if (this.badCommands >= this.ctx.limits.maxBadCommands) {
      this.write(statusLine(false, `${text}; too many bad commands, closing`));
      this.end();
      return;
    }
    this.write(statusLine(false, text));
  }

  ok(text: string): void {
    this.write(statusLine(true, text));
  }

  err(text: string, code?: ResponseCode): void {
    this.write(statusLine(false, code ? `[${code}] ${text}` : text));
  }

  write(data: string | Buffer): Promise<void> {
    if (this.closed || this.socket.destroyed) return Promise.resolve();
    if (this.socket.write(data)) return Promise.resolve();
    return new Promise((resolve) => {
      this.socket.once("drain", resolve);
      this.socket.once("close", resolve);
    });
  }

  /** The message for a client's message number (RFC 1939 §5: never a deleted one). */
  message(arg: string | undefined): Pop3Message | null {
    if (arg === undefined || !/^\d{1,9}$/.test(arg)) return null;
    const m = this.messages[Number(arg) - 1];
    return m && !m.deleted ? m : null;
  }

  async read(uid: number): Promise<Buffer> {
    if (!this.mailbox) throw new StoreError("NONEXISTENT", "no maildrop");
    return this.mailbox.read(uid);
  }

  /** USER/PASS and AUTH PLAIN end here. */
  async login(login: string, password: string): Promise<void> {
    if (!this.takeUserSlot(login)) {
      this.log.warn({ login }, "too many connections for this account");
      this.ctx.countLogin?.("tempfail");
      return this.err("Too many connections for this account, try again later", "SYS/TEMP");
    }
    try {
      await this.authenticate(login, password);
    } finally {
      if (this.state === "AUTHORIZATION") this.releaseUserSlot();
    }
  }

  private takeUserSlot(login: string): boolean {
    const key = login.trim().toLowerCase();
    const n = this.ctx.perUser.get(key) ?? 0;
    if (n >= this.ctx.limits.maxConnectionsPerUser) return false;
    this.ctx.perUser.set(key, n + 1);
    this.userSlot = key;
    return true;
  }

  private releaseUserSlot(): void {
    const key = this.userSlot;
    if (key === null) return;
    this.userSlot = null;
    const n = (this.ctx.perUser.get(key) ?? 1) - 1;
    if (n <= 0) this.ctx.perUser.delete(key);
    else this.ctx.perUser.set(key, n);
  }

  private async authenticate(login: string, password: string): Promise<void> {
    const delay = this.ctx.throttle.delayFor(this.remoteAddress);
    if (delay > 0) await sleep(delay);
    let account: Account | null;
    try {
      account = await this.ctx.directory.authenticate(login, password);
    } catch (err) {
      this.log.error({ err }, "directory unavailable");
      if (!(err instanceof DirectoryUnavailableError)) this.log.warn("unexpected directory error");
      this.ctx.countLogin?.("tempfail");
      return this.err("Authentication service unavailable, try again later", "SYS/TEMP");
    }
    if (!account) {
      this.ctx.throttle.failed(this.remoteAddress);
      this.log.info({ login }, "authentication failed");
      this.ctx.countLogin?.("auth");
      return this.err("Invalid login or password", "AUTH");
    }
    this.ctx.throttle.succeeded(this.remoteAddress);
    try {
      const user = await this.ctx.store.open(
        account.uid,
        account.quotaBytes !== undefined ? { quotaBytes: account.quotaBytes } : {},
      );
      const release = await user.lockMaildrop(`pop3 ${this.remoteAddress}`);
      try {
        this.mailbox = await user.openMailbox("INBOX");
      } catch (err) {
        await release();
        throw err;
      }
      this.releaseLock = release;
      if (this.closed) {
        // The client left while we logged it in: cleanup() has run, so let go here.
        await this.mailbox?.close();
        this.mailbox = null;
        this.releaseLock = null;
        await release();
        return;
      }
    } catch (err) {
      if (err instanceof StoreError && err.code === "INUSE") {
        this.ctx.countLogin?.("inuse");
        return this.err("Maildrop is locked by another POP3 session", "IN-USE");
      }
      this.log.error({ err, uid: account.uid }, "cannot open maildrop");
      this.ctx.countLogin?.("tempfail");
      return this.err("Cannot open the maildrop, try again later", "SYS/TEMP");
    }
    this.account = account;
    this.messages = this.mailbox.messages().map((meta) => ({ meta, deleted: false }));
    this.state = "TRANSACTION";
    this.ctx.countLogin?.("ok");
    this.log.info({ uid: account.uid, messages: this.messages.length }, "logged in");
    const octets = this.messages.reduce((s, m) => s + m.meta.size, 0);
    this.ok(`Logged in, ${this.messages.length} messages (${octets} octets)`);
  }

  /** RFC 1939 §6: the UPDATE state removes the messages marked deleted. */
  async update(): Promise<boolean> {
    this.state = "UPDATE";
    const uids = this.messages.filter((m) => m.deleted).map((m) => m.meta.uid);
    if (uids.length === 0 || !this.mailbox) return true;
    try {
      await this.mailbox.setFlags(uids, "add", ["\\Deleted"]);
      await this.mailbox.expunge(uids);
      return true;
    } catch (err) {
      this.log.error({ err }, "update failed");
      return false;
    }
  }

  /** RFC 2595 §4: STLS — answer, drop anything pipelined after it, handshake on the same socket. */
  async startTls(): Promise<void> {
    const context = this.ctx.secureContext;
    if (!context) return;
    const raw = this.socket;
    raw.off("data", this.onData);
    this.reader.discard();
    this.queue = [];
    await this.write(statusLine(true, "Begin TLS negotiation"));
    const secure = new TLSSocket(raw, { isServer: true, secureContext: context });
    const ok = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), TLS_HANDSHAKE_TIMEOUT_MS);
      secure.once("secure", () => {
        clearTimeout(timer);
        resolve(true);
      });
      secure.once("error", () => {
        clearTimeout(timer);
        resolve(false);
      });
    });
    if (!ok) {
      this.log.info("TLS handshake failed");
      secure.destroy();
      raw.destroy();
      return;
    }
    this.socket = secure;
    this.secure = true;
    this.attach(secure);
  }

  end(): void {
    if (this.closed) return;
    this.socket.end();
    setTimeout(() => this.socket.destroy(), 2000).unref();
    void this.cleanup();
  }

  private async cleanup(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    const mailbox = this.mailbox;
    const release = this.releaseLock;
    this.mailbox = null;
    this.releaseLock = null;
    this.releaseUserSlot();
    try {
      await mailbox?.close();
    } finally {
      await release?.().catch(() => undefined);
      this.onClosed();
    }
  }

  /** Server drain: close without UPDATE (the client retries; nothing deleted half-way). */
  shutdown(): void {
    this.write(statusLine(false, "[SYS/TEMP] Server shutting down"));
    this.end();
  }
}
