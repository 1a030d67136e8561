/**
 * One SMTP or LMTP transaction to one host, through nodemailer's
 * SMTPConnection (LMTP mode gives one reply per recipient after DATA,
 * RFC 2033 §4.2). Returns each recipient's outcome; never throws.
 * Sessions are kept open for the next message to the same host (like
 * Postfix's connection cache) and closed after IDLE_SESSION_MS.
 */
import SMTPConnection from "nodemailer/lib/smtp-connection";

/** How long an idle outbound session is kept for the next message. */
export const IDLE_SESSION_MS = 5000;

export interface TransportTarget {
  host: string;
  port: number;
  lmtp: boolean;
  /** Name for EHLO/LHLO. */
  name: string;
  /** TLS server name (the MX host name) for SNI. */
  servername?: string;
  connectTimeoutMs: number;
  socketTimeoutMs: number;
}

export interface RecipientOutcome {
  /** 2 delivered, 4 try again, 5 permanent. */
  klass: 2 | 4 | 5;
  reply: string;
}

export interface TransactionResult {
  /** false: no SMTP session was reached (connection refused, timeout, bad greeting): try the next host. */
  connected: boolean;
  outcomes: Map<string, RecipientOutcome>;
}

type RcptError = SMTPConnection.SMTPError & { recipient?: string };
type SendError = RcptError & { rejectedErrors?: RcptError[] };

function klassOf(code: number | undefined): 4 | 5 {
  return code !== undefined && code >= 500 && code < 600 ? 5 : 4;
}

function oneLine(text: string): string {
  return text.replace(/[\r\n]+/g, " ").slice(0, 500);
}

const keyOf = (t: TransportTarget) => `${t.lmtp ? "lmtp" : "smtp"}:${t.host}:${t.port}`;

interface Session {
  connection: SMTPConnection;
  dead: boolean;
  timer?: NodeJS.Timeout;
}

/** Open sessions by destination host. One per process (the runner's). */
export class SessionPool {
  private readonly idle = new Map<string, Session[]>();

  take(target: TransportTarget): Session | undefined {
    const list = this.idle.get(keyOf(target));
    for (let s = list?.pop(); s; s = list?.pop()) {
      if (s.timer) clearTimeout(s.timer);
      if (!s.dead) return s;
    }
    return undefined;
  }

  give(target: TransportTarget, session: Session): void {
    if (session.dead) return;
    const key = keyOf(target);
    const list = this.idle.get(key) ?? [];
    list.push(session);
    this.idle.set(key, list);
    session.timer = setTimeout(() => {
      const at = list.indexOf(session);
      if (at >= 0) list.splice(at, 1);
      quit(session);
    }, IDLE_SESSION_MS);
    session.timer.unref();
  }

  closeAll(): void {
    for (const list of this.idle.values()) {
      for (const s of list.splice(0)) {
        if (s.timer) clearTimeout(s.timer);
        quit(s);
      }
    }
  }
}

function quit(session: Session): void {
  session.dead = true;
  try {
    session.connection.quit();
  } catch {
    session.connection.close();
  }
  setTimeout(() => session.connection.close(), 1000).unref();
}

async function open(target: TransportTarget): Promise<Session> {
  const connection = new SMTPConnection({
    host: target.host,
    port: target.port,
    lmtp: target.lmtp,
    name: target.name,
    secure: false,
    // Opportunistic STARTTLS (RFC 3207): use it when offered, go on in plaintext
    // when the handshake fails; MX certificates are not verified (RFC 7435).
    ignoreTLS: target.lmtp,
    opportunisticTLS: true,
    tls: { rejectUnauthorized: false, ...(target.servername ? { servername: target.servername } : {}) },
    connectionTimeout: target.connectTimeoutMs,
    greetingTimeout: target.connectTimeoutMs,
    socketTimeout: target.socketTimeoutMs,
  });
  const session: Session = { connection, dead: false };
  await new Promise<void>((resolve, reject) => {
    connection.once("error", reject);
    connection.connect(() => {
      connection.removeListener("error", reject);
      resolve();
    });
  });
  connection.on("error", () => {
    session.dead = true;
  });
  connection.on("end", () => {
    session.dead = true;
  });
  return session;
}

function send(
  session: Session,
  from: string,
  to: string[],
  message: Buffer,
): Promise<SMTPConnection.SentMessageInfo> {
  return new Promise((resolve, reject) => {
    session.connection.send(
      { from, to, size: message.length, use8BitMime: true },
      message,
      (err: SMTPConnection.SMTPError | null, sent: SMTPConnection.SentMessageInfo) => {
        if (err) reject(err);
        else resolve(sent);
      },
    );
  });
}

function resetAndKeep(pool: SessionPool | undefined, target: TransportTarget, session: Session): void {
  if (!pool || session.dead) {
    quit(session);
    return;
  }
  session.connection.reset((err) => {
    if (err) quit(session);
    else pool.give(target, session);
  });
}

export async function sendTransaction(
  target: TransportTarget,
  from: string,
  to: string[],
  message: Buffer,
  pool?: SessionPool,
  fresh = false,
): Promise<TransactionResult> {
  const outcomes = new Map<string, RecipientOutcome>();
  const failAll = (klass: 4 | 5, reply: string) => {
    for (const rcpt of to) if (!outcomes.has(rcpt)) outcomes.set(rcpt, { klass, reply });
  };
  let session = fresh ? undefined : pool?.take(target);
  const reused = session !== undefined;
  try {
    session ??= await open(target);
  } catch (error) {
    failAll(4, `4.4.1 ${oneLine((error as Error).message)}`);
    return { connected: false, outcomes };
  }
  try {
    const info = await send(session, from, to, message);
    for (const err of (info.rejectedErrors ?? []) as RcptError[]) {
      if (err.recipient)
        outcomes.set(err.recipient, {
          klass: klassOf(err.responseCode),
          reply: oneLine(err.response ?? err.message),
        });
    }
    for (const rcpt of info.accepted) {
      if (!outcomes.has(rcpt)) outcomes.set(rcpt, { klass: 2, reply: oneLine(info.response) });
    }
    failAll(4, "4.4.0 no reply for this recipient");
    if (pool && !session.dead) pool.give(target, session);
    else quit(session);
    return { connected: true, outcomes };
  } catch (error) {
    const err = error as SendError;
    if (!err.responseCode && reused && (err.rejectedErrors ?? []).length === 0) {
      // A cached session the server had closed meanwhile: nothing was taken, go again on a new one.
      quit(session);
      return sendTransaction(target, from, to, message, pool, true);
    }
    for (const r of err.rejectedErrors ?? []) {
      if (r.recipient)
        outcomes.set(r.recipient, {
          klass: klassOf(r.responseCode),
          reply: oneLine(r.response ?? r.message),
        });
    }
    if (err.responseCode) {
      failAll(klassOf(err.responseCode), oneLine(err.response ?? err.message));
      if (err.responseCode !== 421) resetAndKeep(pool, target, session);
      else quit(session);
      return { connected: true, outcomes };
    }
    quit(session);
    const connected = outcomes.size > 0;
    failAll(4, `4.4.1 ${oneLine(err.message)}`);
    return { connected, outcomes };
  }
}
