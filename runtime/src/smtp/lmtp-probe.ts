/**
 * One LMTP client connection (RFC 2033) that asks a store whether it would
 * take a recipient, without sending a message: MAIL FROM:<> [SIZE=n] and
 * RCPT TO:<addr>, the transaction left open and ended by RSET (RFC 5321
 * §4.1.1.5) in front of the next probe, so a probe is one round trip when
 * the store offers PIPELINING (RFC 2920 §3.1: RSET, MAIL and RCPT may share a
 * group) and a kept connection is free again as soon as RCPT is answered.
 * Lines and replies only; what a reply means is quota-check.ts's business.
 */
import { connect, type Socket } from "node:net";

export interface ProbeReply {
  code: number;
  /** The last line's text after the code, e.g. "5.2.2 Mailbox is full". */
  text: string;
  /** Every line's text after the code (LHLO: the extensions). */
  lines: string[];
}

/** RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets; a store sending more is broken. */
const MAX_REPLY_BYTES = 64 * 1024;

/** The store accepted the connection but did not greet and answer LHLO in time. */
export class GreetingTimeout extends Error {}

export class ProbeConnection {
  private buffer = "";
  private lines: string[] = [];
  private pending: { resolve: (r: ProbeReply) => void; reject: (e: Error) => void } | undefined;
  private failure: Error | undefined;
  private sizeAdvertised = false;
  private utf8Advertised = false;
  private pipelining = false;
  /** A probe's transaction is open (ended by the RSET in front of the next probe). */
  private inTransaction = false;

  private constructor(private readonly socket: Socket) {
    socket.setEncoding("latin1");
    socket.on("data", (chunk: string) => this.onData(chunk));
    socket.on("error", (err) => this.fail(err));
    socket.on("close", () => this.fail(new Error("connection closed by the store")));
  }

  /** Connected and greeted (220, then LHLO 250) within `timeoutMs`; rejects on anything else. */
  static async open(host: string, port: number, name: string, timeoutMs: number): Promise<ProbeConnection> {
    const socket = connect({ host, port });
    const conn = new ProbeConnection(socket);
    const timer = setTimeout(() => {
      conn.fail(new GreetingTimeout(`no LHLO reply within ${timeoutMs} ms`));
      socket.destroy();
    }, timeoutMs);
    try {
      const greeting = await conn.reply();
      if (greeting.code !== 220) throw new Error(`greeting ${greeting.code} ${greeting.text}`);
      // RFC 2033 §4.1: LHLO, never HELO/EHLO.
      const lhlo = await conn.command(`LHLO ${name}`);
      if (lhlo.code !== 250) throw new Error(`LHLO ${lhlo.code} ${lhlo.text}`);
      const keywords = new Set(lhlo.lines.map((l) => l.split(" ")[0]?.toUpperCase()));
      conn.sizeAdvertised = keywords.has("SIZE");
      conn.utf8Advertised = keywords.has("SMTPUTF8");
      conn.pipelining = keywords.has("PIPELINING");
      return conn;
    } catch (err) {
      conn.close();
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  get closed(): boolean {
    return this.failure !== undefined;
  }

  /**
   * The RCPT reply for `address`, with `size` announced when the store offers
   * SIZE (RFC 1870 §4); or the MAIL reply when MAIL was refused (`stage`).
   * Rejects when the connection is unusable (closed, or RSET refused).
   */
  async probe(address: string, size: number): Promise<ProbeReply & { stage: "mail" | "rcpt" }> {
    const params = [
      ...(this.sizeAdvertised ? [`SIZE=${size}`] : []),
      // RFC 6531 §3.4: a non-ASCII address needs SMTPUTF8 on MAIL.
      ...(this.utf8Advertised && /[^\x20-\x7e]/.test(address) ? ["SMTPUTF8"] : []),
    ];
    const lines = [
      ...(this.inTransaction ? ["RSET"] : []),
      ["MAIL FROM:<>", ...params].join(" "),
      `RCPT TO:<${address}>`,
    ];
    if (lines.some((l) => /[\r\n]/.test(l))) throw new Error("line break in a command");
    if (this.failure) throw this.failure;
    const rset = this.inTransaction;
    this.inTransaction = true;
    if (this.pipelining) {
      this.socket.write(lines.map((l) => `${l}\r\n`).join(""));
      const replies: ProbeReply[] = [];
      for (let i = 0; i < lines.length; i++) replies.push(await this.reply());
      if (rset && replies.shift()?.code !== 250) throw this.unusable("RSET refused");
      const [mail, rcpt] = replies as [ProbeReply, ProbeReply];
      return mail.code === 250 ? { ...rcpt, stage: "rcpt" } : { ...mail, stage: "mail" };
    }
    if (rset && (await this.command("RSET")).code !== 250) throw this.unusable("RSET refused");
    const mail = await this.command(lines.at(-2) ?? "");
    if (mail.code !== 250) return { ...mail, stage: "mail" };
    return { ...(await this.command(lines.at(-1) ?? "")), stage: "rcpt" };
  }

  close(): void {
    this.fail(new Error("closed"));
    this.socket.end("QUIT\r\n");
    this.socket.destroySoon();
    setTimeout(() => this.socket.destroy(), 1000).unref();
  }

  /** Idle connections must not keep the process alive. */
  unref(): void {
    this.socket.unref();
  }

  ref(): void {
    this.socket.ref();
  }

  private unusable(reason: string): Error {
    this.fail(new Error(reason));
    this.socket.destroy();
    return this.failure ?? new Error(reason);
  }

  private command(line: string): Promise<ProbeReply> {
    if (/[\r\n]/.test(line)) return Promise.reject(new Error("line break in a command"));
    if (this.failure) return Promise.reject(this.failure);
    this.socket.write(`${line}\r\n`);
    return this.reply();
  }

  private reply(): Promise<ProbeReply> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject };
      this.drain();
    });
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    if (this.buffer.length > MAX_REPLY_BYTES) {
      this.fail(new Error("reply too long"));
      this.socket.destroy();
      return;
    }
    let at = this.buffer.indexOf("\n");
    while (at >= 0) {
      this.lines.push(this.buffer.slice(0, at).replace(/\r$/, ""));
      this.buffer = this.buffer.slice(at + 1);
      at = this.buffer.indexOf("\n");
    }
    this.drain();
  }

  /** Hands a complete reply (RFC 5321 §4.2.1: "ddd-" lines, then "ddd ") to the waiting command. */
  private drain(): void {
    if (!this.pending) return;
    const last = this.lines.findIndex((l) => !/^\d{3}-/.test(l));
    if (last < 0) return;
    const lines = this.lines.splice(0, last + 1);
    const final = lines[lines.length - 1] ?? "";
    const m = /^(\d{3})(?: (.*))?$/.exec(final);
    const pending = this.pending;
    this.pending = undefined;
    if (!m) {
      this.fail(new Error(`bad reply line ${JSON.stringify(final.slice(0, 100))}`));
      pending.reject(new Error("bad reply"));
      return;
    }
    pending.resolve({ code: Number(m[1]), text: m[2] ?? "", lines: lines.map((l) => l.slice(4)) });
  }

  private fail(err: Error): void {
    if (!this.failure) this.failure = err;
    const pending = this.pending;
    this.pending = undefined;
    pending?.reject(this.failure);
  }
}
