/**
 * One IMAP connection: framing, the state machine (RFC 3501 §3), dispatch
 * through the command table, untagged updates for the selected mailbox
 * (RFC 3501 §7.4.1, §5.2), STARTTLS, COMPRESS=DEFLATE (RFC 4978) and limits.
 */
import type { Socket } from "node:net";
import { type SecureContext, TLSSocket } from "node:tls";
import zlib from "node:zlib";
import type { Logger } from "pino";
import type { Account } from "../directory/types.js";
import type { MailboxChanges, MailboxSession, UserStore } from "../store/types.js";
import { TABLE } from "./commands/index.js";
import type { Call, State } from "./commands/types.js";
import { ImapError, toResponse } from "./errors.js";
import type { ImapLimits } from "./limits.js";
import { Args } from "./wire/args.js";
import { compile, untagged, type Value } from "./wire/compiler.js";
import { CommandFramer, type FrameEvent, type FramerLimits } from "./wire/framer.js";
import { ParseError, parseCommand } from "./wire/parser.js";

/** What a session needs from its server. */
export interface SessionServer {
  limits: ImapLimits;
  log: Logger;
  tls: SecureContext | undefined;
  loginDisabledWithoutTls: boolean;
  authenticate(login: string, password: string, session: Session): Promise<Account | null>;
  openStore(account: Account): Promise<UserStore>;
  /** Per-account connection accounting; false when the account is at its limit (host-wide with imap.workers). */
  claimUser(uid: string): boolean | Promise<boolean>;
  releaseUser(uid: string): void;
  /** Failed authentications from this address so far (for the delay). */
  authFailures(ip: string, add: boolean): number | Promise<number>;
  closed(session: Session): void;
  metrics?: { command(name: string, status: string): void } | undefined;
}

/** Interval of "* OK Still here" during IDLE (RFC 2177 §3: keep NATs and clients awake). */
export const IDLE_KEEPALIVE_MS = 120_000;
/** A selected mailbox is re-read at least this often between commands, even without a change event. */
export const SYNC_INTERVAL_MS = 5000;
/** MAX_PREAUTH_LITERAL_BYTES: literals before login (user names, passwords, SASL responses). */
export const MAX_PREAUTH_LITERAL_BYTES = 8192;
/** Commands queued (pipelined) before the socket is paused. */
const MAX_QUEUED = 64;

let nextId = 1;

export class Session {
  readonly id: string;
  state: State = "not-authenticated";
  account: Account | undefined;
  user: UserStore | undefined;
  mailbox: MailboxSession | undefined;
  /** UIDs in sequence order as the client knows them (for EXPUNGE numbers). */
  view: number[] = [];
  /** RFC 7162 CONDSTORE enabled (ENABLE, SELECT (CONDSTORE), or a MODSEQ use). */
  condstore = false;
  readonly enabled = new Set<string>();
  log: Logger;
  secure: boolean;
  compressed = false;

  private socket: Socket;
  private framer: CommandFramer;
  private frameLimits!: FramerLimits;
  private queue: Buffer[] = [];
  private waiter: ((line: Buffer | null) => void) | undefined;
  private busy = false;
  private badInRow = 0;
  private ending = false;
  private deflate: zlib.DeflateRaw | undefined;
  private inflate: zlib.InflateRaw | undefined;
  private syncing: Promise<void> = Promise.resolve();
  private offChange: (() => void) | undefined;
  private changePending = false;
  private idling = false;
  /** The account whose per-account connection slot this session holds. */
  private claimedUid: string | null = null;
  private lastSync = 0;
  private draining = false;

  constructor(
    socket: Socket,
    readonly server: SessionServer,
    readonly remoteAddress: string,
    secure: boolean,
  ) {
    this.id = (nextId++).toString(36);
    this.socket = socket;
    this.secure = secure;
    this.log = server.log.child({ cid: this.id, proto: "imap", remote: remoteAddress });
    this.framer = this.newFramer();
    this.attach(socket);
  }

  private newFramer(): CommandFramer {
    this.frameLimits = this.limitsFor(this.state);
    return new CommandFramer(this.frameLimits, (ev) => this.onFrame(ev));
  }

  /** Before login only LOGIN/AUTHENTICATE-sized literals are accepted (no memory for strangers). */
  private limitsFor(state: State): FramerLimits {
    const l = this.server.limits;
    const literal =
      state === "not-authenticated"
        ? Math.min(MAX_PREAUTH_LITERAL_BYTES, l.maxLiteralBytes)
        : l.maxLiteralBytes;
    return {
      maxLineBytes: l.maxLineBytes,
      maxLiteralBytes: literal,
      maxCommandBytes: literal + 4 * l.maxLineBytes,
    };
  }

  private attach(socket: Socket): void {
    socket.on("data", this.onData);
    socket.on("error", this.onError);
    socket.on("close", this.onClose);
    socket.on("timeout", this.onTimeout);
    socket.setTimeout(this.server.limits.idleTimeoutMs);
    socket.setKeepAlive(true, 60_000);
    // responses are written whole (cork/uncork per command): Nagle would only add delayed-ACK stalls
    socket.setNoDelay(true);
  }

  private detach(socket: Socket): void {
    socket.off("data", this.onData);
    socket.off("error", this.onError);
    socket.off("close", this.onClose);
    socket.off("timeout", this.onTimeout);
  }

  private onData = (chunk: Buffer): void => {
    if (this.inflate) this.inflate.write(chunk);
    else this.framer.push(chunk);
  };
  private onError = (err: Error): void => {
    this.log.debug({ err: err.message }, "socket error");
  };
  private onClose = (): void => {
    this.cleanup().catch((err: unknown) => this.log.error({ err }, "cleanup failed"));
  };
  private onTimeout = (): void => {
    if (this.idling) return;
    this.log.info("idle timeout");
    this.bye("Autologout; idle for too long");
  };

  start(): void {
    this.writeLine(`* OK [CAPABILITY ${this.capabilities().join(" ")}] mailinfra IMAP4rev1 ready`);
    this.flush();
  }

  /** RFC 3501 §6.1.1; what is offered depends on state and TLS. */
  capabilities(): string[] {
    const caps = ["IMAP4rev1", "LITERAL+", "SASL-IR", "ID", "ENABLE", "IDLE", "NAMESPACE"];
    if (this.state === "not-authenticated") {
      if (this.server.tls && !this.secure) caps.push("STARTTLS");
      if (this.loginDisabled()) caps.push("LOGINDISABLED");
      else caps.push("AUTH=PLAIN");
      return caps;
    }
    caps.push(
      "UIDPLUS",
      "MOVE",
      "SPECIAL-USE",
      "CONDSTORE",
      "QUOTA",
      "UNSELECT",
      "CHILDREN",
      "LIST-EXTENDED",
      "LIST-STATUS",
      "ESEARCH",
      "STATUS=SIZE",
      `APPENDLIMIT=${this.server.limits.maxLiteralBytes}`,
    );
    if (!this.compressed) caps.push("COMPRESS=DEFLATE");
    return caps;
  }

  loginDisabled(): boolean {
    return this.server.loginDisabledWithoutTls && !this.secure;
  }

  // ---- output ----

  write(buf: Buffer): void {
    if (this.ending && this.socket.destroyed) return;
    if (this.deflate) this.deflate.write(buf);
    else this.socket.write(buf);
  }

  writeLine(text: string): void {
    this.write(Buffer.from(`${text}\r\n`, "utf8"));
  }

  /** "* " + values */
  untagged(values: Value[]): void {
    this.write(untagged(values));
  }

  flush(): void {
    if (this.deflate) this.deflate.flush(zlib.constants.Z_SYNC_FLUSH);
  }

  /** Puts everything written so far on the wire now (continuation requests, IDLE updates). */
  push(): void {
    this.flush();
    const socket = this.socket;
    if (socket.writableCorked > 0) {
      socket.uncork();
      socket.cork();
    }
  }

  // ---- input ----

  private onFrame(ev: FrameEvent): void {
    switch (ev.type) {
      case "command":
        if (this.waiter && this.queue.length === 0) {
          const w = this.waiter;
          this.waiter = undefined;
          w(ev.data);
          return;
        }
        this.queue.push(ev.data);
        if (this.queue.length > MAX_QUEUED) this.socket.pause();
        void this.pump();
        return;
      case "continue":
        this.writeLine("+ Ready for literal data");
        this.push();
        return;
      case "literal-too-large":
        this.log.info({ size: ev.size, sync: ev.sync }, "literal too large");
        if (ev.sync) {
          // RFC 3501 §7.5: without "+" the client must not send the literal
          this.writeLine(
            `${ev.tag ?? "*"} NO [TOOBIG] Literal too large (limit ${this.frameLimits.maxLiteralBytes} octets)`,
          );
          this.flush();
          this.countBad();
        } else {
          // RFC 7888 §4: the literal is already on its way; close rather than read it
          this.bye(`[TOOBIG] Literal too large (limit ${this.frameLimits.maxLiteralBytes} octets)`);
        }
        return;
      case "line-too-long":
        this.log.info("line too long");
        this.bye(`Line too long (limit ${this.server.limits.maxLineBytes} octets)`);
        return;
    }
  }

  /** The next line from the client (AUTHENTICATE responses, IDLE's DONE); null when the connection ends. */
  readContinuation(): Promise<Buffer | null> {
    const queued = this.queue.shift();
    if (queued) return Promise.resolve(queued);
    if (this.ending) return Promise.resolve(null);
    return new Promise((resolve) => {
      this.waiter = resolve;
    });
  }

  private async pump(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      while (this.queue.length > 0 && !this.ending) {
        const data = this.queue.shift()!;
        if (this.queue.length <= MAX_QUEUED / 2 && this.socket.isPaused()) this.socket.resume();
        if (this.server.limits.idleTimeoutMs > 0) this.socket.setTimeout(this.server.limits.idleTimeoutMs);
        const socket = this.socket;
        socket.cork();
        let after: (() => void) | undefined;
        try {
          after = await this.run(data);
        } catch (err) {
          // a bug must cost one connection, never the process
          this.log.error({ err }, "session failed");
          this.bye("[SERVERBUG] Internal error");
        } finally {
          this.flush();
          socket.uncork();
        }
        after?.();
        if (this.draining) this.bye("[UNAVAILABLE] Server shutting down");
      }
    } finally {
      this.busy = false;
    }
  }

  private countBad(): void {
    this.badInRow++;
    if (this.badInRow >= this.server.limits.maxBadCommands) {
      this.log.info({ bad: this.badInRow }, "too many bad commands");
      this.bye("Too many invalid commands");
    }
  }

  private async run(data: Buffer): Promise<(() => void) | undefined> {
    let parsed: ReturnType<typeof parseCommand>;
    try {
      parsed = parseCommand(data);
    } catch (err) {
      if (!(err instanceof ParseError)) throw err;
      this.writeLine(`${err.tag ?? "*"} BAD Error in IMAP command: ${err.message}`);
      this.countBad();
      return;
    }
    const { tag } = parsed;
    let name = parsed.command;
    let nodes = parsed.args;
    let uid = false;
    if (name === "UID") {
      const verb = nodes[0];
      if (verb?.type !== "atom") {
        this.writeLine(`${tag} BAD UID needs a command`);
        this.countBad();
        return;
      }
      name = verb.value.toUpperCase();
      nodes = nodes.slice(1);
      uid = true;
    }
    const spec = TABLE.get(name);
    if (!spec || (uid && !spec.uid)) {
      this.writeLine(
        `${tag} BAD Unknown command ${uid ? "UID " : ""}${name.replace(/[^A-Z0-9.-]/g, "").slice(0, 20)}`,
      );
      this.countBad();
      return;
    }
    const call: Call = { tag, name, uid };
    const label = `${uid ? "UID " : ""}${name}`;
    if (!spec.states.includes(this.state)) {
      const why =
        this.state === "not-authenticated"
          ? "Log in first"
          : this.state === "selected"
            ? "Not allowed now"
            : "Select a mailbox first";
      this.writeLine(`${tag} BAD ${label}: ${why}`);
      this.countBad();
      return;
    }
    this.log.debug({ tag, command: label }, "command");
    let status = "OK";
    try {
      const args = spec.parse(new Args(nodes, this.enabled.has("UTF8=ACCEPT")), call, this);
      const result = await spec.handler(this, args, call);
      this.badInRow = 0;
      if (this.ending) return result?.after;
      // LOGOUT's BYE ends the session: nothing to update
      if (this.mailbox && this.state === "selected" && name !== "LOGOUT") {
        await this.sendUpdates(!spec.holdExpunges || uid, spec.forceSync);
      }
      const code = result?.code ? `[${result.code}] ` : "";
      this.writeLine(`${tag} OK ${code}${result?.text ?? `${label} completed`}`);
      this.server.metrics?.command(label, status);
      return result?.after;
    } catch (err) {
      const r = toResponse(err);
      status = r.status;
      if (r.internal) this.log.error({ err, command: label }, "command failed");
      else
        this.log.debug(
          { command: label, status: r.status, reason: err instanceof Error ? err.message : "" },
          "command refused",
        );
      if (this.ending) return undefined;
      if (r.status === "BAD") this.countBad();
      else this.badInRow = 0;
      if (this.ending) return undefined;
      if (this.mailbox && this.state === "selected" && r.status === "NO") {
        await this.sendUpdates(!spec.holdExpunges || uid).catch(() => undefined);
      }
      this.writeLine(`${tag} ${r.status} ${r.code ? `[${r.code}] ` : ""}${r.text}`);
    }
    this.server.metrics?.command(label, status);
    return undefined;
  }

  // ---- selected mailbox and updates ----

  async select(mailbox: MailboxSession): Promise<void> {
    await this.unselect();
    this.mailbox = mailbox;
    this.view = mailbox.messages().map((m) => m.uid);
    this.state = "selected";
    this.lastSync = Date.now();
    this.offChange = mailbox.onChange(() => this.onMailboxChange());
  }

  async unselect(): Promise<void> {
    const mb = this.mailbox;
    this.offChange?.();
    this.offChange = undefined;
    this.mailbox = undefined;
    this.view = [];
    if (this.state === "selected") this.state = "authenticated";
    if (mb) await mb.close().catch(() => undefined);
  }

  private onMailboxChange(): void {
    this.changePending = true;
    if (this.idling)
      void this.sendUpdates(true).then(
        () => this.push(),
        () => undefined,
      );
  }

  /**
   * Syncs the mailbox and sends EXISTS/RECENT/EXPUNGE/FETCH (RFC 3501 §7.3,
   * §7.4). Only when something changed (the store's onChange, which also
   * watches other processes), when forced (NOOP, CHECK, IDLE), or when the
   * last sync is older than SYNC_INTERVAL_MS. Never while EXPUNGE must be
   * held back (§7.4.1).
   */
  sendUpdates(allowExpunge: boolean, force = false): Promise<void> {
    const run = async (): Promise<void> => {
      const mb = this.mailbox;
      if (!mb || !allowExpunge) return;
      const now = Date.now();
      if (!force && !this.changePending && now - this.lastSync < SYNC_INTERVAL_MS) return;
      this.changePending = false;
      this.lastSync = now;
      let changes: MailboxChanges;
      try {
        changes = await mb.sync();
      } catch (err) {
        this.log.info({ err: (err as Error).message }, "selected mailbox went away");
        // RFC 3501 §7.1.5: the mailbox cannot be used any more
        this.writeLine("* BYE [UNAVAILABLE] Selected mailbox was removed or rebuilt");
        this.end();
        return;
      }
      if (this.mailbox !== mb) return;
      this.reportChanges(changes);
    };
    this.syncing = this.syncing.then(run, run);
    return this.syncing;
  }

  private reportChanges(changes: MailboxChanges): void {
    const mb = this.mailbox!;
    if (changes.expunged.length > 0) this.reportExpunged(changes.expunged);
    if (changes.added.length > 0) {
      this.view = mb.messages().map((m) => m.uid);
      this.writeLine(`* ${this.view.length} EXISTS`);
      this.writeLine(`* ${mb.recent().size} RECENT`);
    }
    this.view = mb.messages().map((m) => m.uid);
    if (changes.flagsChanged.length > 0) {
      const seqOf = new Map(this.view.map((u, i) => [u, i + 1]));
      for (const m of changes.flagsChanged) {
        const seq = seqOf.get(m.uid);
        if (seq === undefined) continue;
        const items: Value[] = [{ atom: "FLAGS" }, this.flagList(m.flags, m.uid), { atom: "UID" }, m.uid];
        if (this.condstore) items.push({ atom: "MODSEQ" }, [m.modseq]);
        this.write(Buffer.from(`* ${seq} FETCH ${compile([items]).toString("latin1")}\r\n`, "latin1"));
      }
    }
  }

  /** Sends "* n EXPUNGE" for UIDs the client knows, keeping numbers right as they shift. */
  reportExpunged(uids: readonly number[]): void {
    const gone = new Set(uids);
    // from the highest sequence number down, so earlier numbers stay valid
    for (let i = this.view.length - 1; i >= 0; i--) {
      if (gone.has(this.view[i]!)) {
        this.writeLine(`* ${i + 1} EXPUNGE`);
        this.view.splice(i, 1);
      }
    }
  }

  flagList(flags: ReadonlySet<string>, uid: number): Value {
    const out: Value[] = [];
    for (const f of flags) out.push({ atom: f });
    if (this.mailbox?.recent().has(uid)) out.push({ atom: "\\Recent" });
    return out;
  }

  // ---- login ----

  async login(account: Account): Promise<void> {
    // The client may have gone while the directory answered: cleanup() has run, take no slot.
    if (this.cleaned) throw new ImapError("NO", "Connection closed");
    if (!(await this.server.claimUser(account.uid))) {
      throw new ImapError("NO", "Too many connections for this account", "LIMIT");
    }
    this.claimedUid = account.uid;
    try {
      this.user = await this.server.openStore(account);
    } catch (err) {
      this.releaseClaim();
      throw err;
    }
    if (this.cleaned) {
      this.releaseClaim();
      throw new ImapError("NO", "Connection closed");
    }
    this.account = account;
    this.state = "authenticated";
    // the framer holds this object: from now on literals up to imap.maxLiteralBytes
    Object.assign(this.frameLimits, this.limitsFor("authenticated"));
    this.log = this.log.child({ user: account.uid });
  }

  // ---- transport upgrades ----

  /** RFC 3501 §6.2.1: called after the tagged OK has been written. */
  startTls(): void {
    const ctx = this.server.tls;
    if (!ctx) return;
    const raw = this.socket;
    this.detach(raw);
    // pipelined data after STARTTLS must be discarded (RFC 3501 §6.2.1)
    this.queue = [];
    this.framer = this.newFramer();
    const tls = new TLSSocket(raw, { isServer: true, secureContext: ctx });
    this.socket = tls;
    this.secure = true;
    this.attach(tls);
    tls.on("secure", () => this.log.debug({ protocol: tls.getProtocol() }, "TLS started"));
  }

  /** RFC 4978 §3: after the tagged OK, both directions are raw DEFLATE. */
  startCompression(): void {
    this.compressed = true;
    const socket = this.socket;
    const deflate = zlib.createDeflateRaw({ level: 6, memLevel: 8, windowBits: 15 });
    const inflate = zlib.createInflateRaw();
    deflate.on("data", (b: Buffer) => socket.write(b));
    deflate.on("error", () => this.end());
    inflate.on("data", (b: Buffer) => this.framer.push(b));
    inflate.on("error", () => {
      this.log.info("bad compressed data");
      this.end();
    });
    this.deflate = deflate;
    this.inflate = inflate;
  }

  /** IDLE (RFC 2177): updates as they happen until DONE. */
  async idle(): Promise<Buffer | null> {
    this.idling = true;
    this.socket.setTimeout(0);
    const keepalive = setInterval(() => {
      this.writeLine("* OK Still here");
      this.push();
    }, IDLE_KEEPALIVE_MS);
    keepalive.unref();
    try {
      this.writeLine("+ idling");
      if (this.mailbox) await this.sendUpdates(true, true);
      this.push();
      return await this.readContinuation();
    } finally {
      clearInterval(keepalive);
      this.idling = false;
      if (this.server.limits.idleTimeoutMs > 0) this.socket.setTimeout(this.server.limits.idleTimeoutMs);
    }
  }

  // ---- ending ----

  bye(text: string): void {
    if (this.ending) return;
    this.writeLine(`* BYE ${text}`);
    this.flush();
    this.end();
  }

  end(): void {
    if (this.ending) return;
    this.ending = true;
    this.state = "logout";
    this.queue = [];
    const w = this.waiter;
    this.waiter = undefined;
    w?.(null);
    const socket = this.socket;
    if (this.deflate) {
      this.deflate.end(() => socket.end());
    } else {
      socket.uncork();
      socket.end();
    }
    // a peer that never reads must not hold the socket open
    setTimeout(() => socket.destroy(), 5000).unref();
  }

  private releaseClaim(): void {
    if (this.claimedUid === null) return;
    this.server.releaseUser(this.claimedUid);
    this.claimedUid = null;
  }

  private cleaned = false;
  private async cleanup(): Promise<void> {
    if (this.cleaned) return;
    this.cleaned = true;
    this.ending = true;
    const w = this.waiter;
    this.waiter = undefined;
    w?.(null);
    await this.syncing.catch(() => undefined);
    await this.unselect();
    this.releaseClaim();
    this.deflate?.destroy();
    this.inflate?.destroy();
    this.server.closed(this);
    this.log.debug("closed");
  }

  /** Server shutdown: BYE now when between commands, else after the current one. */
  drain(): void {
    this.draining = true;
    if (!this.busy || this.idling) this.bye("[UNAVAILABLE] Server shutting down");
  }

  destroy(): void {
    this.socket.destroy();
  }
}
