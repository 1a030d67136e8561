/**
 * One SMTP or LMTP transaction to one host, through nodemailer's
 * SMTPConnection (LMTP mode gives one reply per recipient after DATA,
 * RFC 2033 §4.2). Returns each recipient's outcome; never throws.
 */
import SMTPConnection from "nodemailer/lib/smtp-connection";

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

function klassOf(code: number | undefined): 4 | 5 {
  return code !== undefined && code >= 500 && code < 600 ? 5 : 4;
}

function oneLine(text: string): string {
  return text.replace(/[\r\n]+/g, " ").slice(0, 500);
}

export async function sendTransaction(
  target: TransportTarget,
  from: string,
  to: string[],
  message: Buffer,
): Promise<TransactionResult> {
  const outcomes = new Map<string, RecipientOutcome>();
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
  let sessionReached = false;
  const failAll = (klass: 4 | 5, reply: string) => {
    for (const rcpt of to) if (!outcomes.has(rcpt)) outcomes.set(rcpt, { klass, reply });
  };
  try {
    await new Promise<void>((resolve, reject) => {
      connection.once("error", reject);
      connection.connect(() => {
        connection.removeListener("error", reject);
        resolve();
      });
    });
    sessionReached = true;
    connection.on("error", () => undefined);
    const info = await new Promise<SMTPConnection.SentMessageInfo>((resolve, reject) => {
      connection.send(
        { from, to, size: message.length, use8BitMime: true },
        message,
        (err: SMTPConnection.SMTPError | null, sent: SMTPConnection.SentMessageInfo) => {
          if (err) reject(err);
          else resolve(sent);
        },
      );
    });
    for (const err of info.rejectedErrors ?? []) {
      const rcpt = (err as SMTPConnection.SMTPError & { recipient?: string }).recipient;
      if (rcpt)
        outcomes.set(rcpt, { klass: klassOf(err.responseCode), reply: oneLine(err.response ?? err.message) });
    }
    for (const rcpt of info.accepted) {
      if (!outcomes.has(rcpt)) outcomes.set(rcpt, { klass: 2, reply: oneLine(info.response) });
    }
    failAll(4, "4.4.0 no reply for this recipient");
  } catch (error) {
    const err = error as SMTPConnection.SMTPError & {
      rejectedErrors?: Array<SMTPConnection.SMTPError & { recipient?: string }>;
    };
    for (const r of err.rejectedErrors ?? []) {
      if (r.recipient)
        outcomes.set(r.recipient, {
          klass: klassOf(r.responseCode),
          reply: oneLine(r.response ?? r.message),
        });
    }
    if (err.responseCode) {
      failAll(klassOf(err.responseCode), oneLine(err.response ?? err.message));
    } else {
      sessionReached = sessionReached && outcomes.size > 0;
      failAll(4, `4.4.1 ${oneLine(err.message)}`);
    }
  } finally {
    try {
      connection.quit();
    } catch {
      connection.close();
    }
    setTimeout(() => connection.close(), 1000).unref();
  }
  return { connected: sessionReached, outcomes };
}
