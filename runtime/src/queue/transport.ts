/**
 * One SMTP or LMTP transaction to one host, through nodemailer's
 * SMTPConnection (LMTP mode gives one reply per recipient after DATA,
 * RFC 2033 §4.2). Returns each recipient's outcome; never throws.
 * Sessions are kept open for the next message to the same host (like
 * Postfix's connection cache) and closed after IDLE_SESSION_MS.
 *
 * Opportunistic STARTTLS (RFC 3207, RFC 7435) as Postfix's
 * smtp_tls_security_level=may: a host whose TLS handshake fails is tried
 * once more in the same attempt without STARTTLS. DSN requests (RFC 3461 §4)
 * go to a next hop that advertises DSN.
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

/** RFC 3461 parameters for one transaction, sent only when the next hop advertises DSN. */
export interface TransactionDsn {
  /** MAIL FROM RET= (§4.3) and ENVID= (§4.4). */
  ret?: "FULL" | "HDRS";
  envid?: string;
  /** RCPT TO NOTIFY= (§4.1) and ORCPT= (§4.2), the same for every recipient of the transaction. */
  notify?: string[];
  orcpt?: string;
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
  /** The next hop advertised DSN (RFC 3461 §4): it got the DSN request and reports on it itself. */
  dsnRelayed?: boolean;
  /** The STARTTLS handshake failed for this reason and the session went on in plaintext. */
  tlsFallback?: string;
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
  /** Set when this session is the plaintext retry after a failed handshake (reported once). */
  tlsFallback?: string;
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

/** True for an error of the STARTTLS handshake (alert, reset or timeout while upgrading). */
function isHandshakeFailure(connection: SMTPConnection, error: unknown): boolean {
  const err = error as { code?: string };
  return err.code === "ETLS" || (connection as { upgrading?: boolean }).upgrading === true;
}

class HandshakeError extends Error {}

async function connectOnce(target: TransportTarget, plaintext: boolean): Promise<Session> {
  const connection = new SMTPConnection({
    host: target.host,
    port: target.port,
    lmtp: target.lmtp,
    name: target.name,
    secure: false,
    // Opportunistic STARTTLS (RFC 3207): used when offered; a refused STARTTLS goes on in
    // plaintext here, a failed handshake in open(). MX certificates are not verified (RFC 7435).
    ignoreTLS: target.lmtp || plaintext,
    opportunisticTLS: true,
    tls: { rejectUnauthorized: false, ...(target.servername ? { servername: target.servername } : {}) },
    connectionTimeout: target.connectTimeoutMs,
    greetingTimeout: target.connectTimeoutMs,
    socketTimeout: target.socketTimeoutMs,
  });
  const session: Session = { connection, dead: false };
  await new Promise<void>((resolve, reject) => {
    const failed = (err: Error) => {
      const handshake = isHandshakeFailure(connection, err);
      connection.on("error", () => undefined); // late errors of a connection given up
      connection.close();
      reject(handshake ? new HandshakeError(err.message) : err);
    };
    connection.once("error", failed);
    connection.connect((err) => {
      connection.removeListener("error", failed);
      // nodemailer hands a silent close before the greeting to this callback instead of 'error'
      if (err) failed(err);
      else resolve();
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

/**
 * A new session. When the STARTTLS handshake fails (a protocol or cipher the
 * two ends do not share, a broken TLS stack), the host is tried once more
 * without STARTTLS, as Postfix does at smtp_tls_security_level=may: with
 * opportunistic TLS, plaintext is the fallback (RFC 7435 §3), never a
 * deferral that ends in a bounce.
 */
async function open(target: TransportTarget): Promise<Session> {
  try {
    return await connectOnce(target, false);
  } catch (err) {
    if (!(err instanceof HandshakeError) || target.lmtp) throw err;
    const session = await connectOnce(target, true);
    session.tlsFallback = oneLine(err.message);
    return session;
  }
}

function send(
  session: Session,
  from: string,
  to: string[],
  message: Buffer,
  dsn: TransactionDsn | undefined,
): Promise<SMTPConnection.SentMessageInfo> {
  const params = dsn && {
    ...(dsn.ret ? { ret: dsn.ret } : {}),
    ...(dsn.envid ? { envid: dsn.envid } : {}),
    ...(dsn.notify?.length ? { notify: dsn.notify } : {}),
    ...(dsn.orcpt ? { orcpt: dsn.orcpt } : {}),
  };
  return new Promise((resolve, reject) => {
    session.connection.send(
      {
        from,
        to,
        size: message.length,
        use8BitMime: true,
        ...(params && Object.keys(params).length > 0 ? { dsn: params } : {}),
      },
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

/** The EHLO keywords the server sent (nodemailer hands them over without the reply code). */
function advertises(info: SMTPConnection.SentMessageInfo, keyword: string): boolean {
  const lines = (info as { ehlo?: string[] }).ehlo ?? [];
  return lines.some((line) => line.split(/\s+/)[0]?.toUpperCase() === keyword);
}

export async function sendTransaction(
  target: TransportTarget,
  from: string,
  to: string[],
  message: Buffer,
  pool?: SessionPool,
  fresh = false,
  dsn?: TransactionDsn,
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
  const tlsFallback = session.tlsFallback;
  delete session.tlsFallback;
  const extra = tlsFallback ? { tlsFallback } : {};
  try {
    const info = await send(session, from, to, message, dsn);
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
    return { connected: true, outcomes, ...extra, ...(advertises(info, "DSN") ? { dsnRelayed: true } : {}) };
  } catch (error) {
    const err = error as SendError;
    if (!err.responseCode && reused && (err.rejectedErrors ?? []).length === 0) {
      // A cached session the server had closed meanwhile: nothing was taken, go again on a new one.
      quit(session);
      return sendTransaction(target, from, to, message, pool, true, dsn);
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
      return { connected: true, outcomes, ...extra };
    }
    quit(session);
    const connected = outcomes.size > 0;
    failAll(4, `4.4.1 ${oneLine(err.message)}`);
    return { connected, outcomes, ...extra };
  }
}
