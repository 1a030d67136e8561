/**
 * The LMTP server (RFC 2033) on smtp-server in LMTP mode: RCPT checks the
 * account in the directory and its quota (rcpt-quota.ts), DATA is read
 * whole, then every accepted recipient gets its own reply (§4.2) — 250 only
 * once that copy is durable.
 */
import type { Logger } from "pino";
import { Counter, type Registry } from "prom-client";
import {
  SMTPServer,
  type SMTPServerDataResult,
  type SMTPServerDataStream,
  type SMTPServerSession,
} from "smtp-server";
import type { Account, Directory } from "../directory/types.js";
import { DirectoryUnavailableError } from "../directory/types.js";
import { HOP_COUNT_LIMIT, tooManyHops } from "../queue/loop.js";
import type { MailStore } from "../store/types.js";
import { deliver, type Redirector } from "./deliver.js";
import { traceHeaders } from "./headers.js";
import { announcedSize, refuseForQuota } from "./rcpt-quota.js";
import { REPLIES, type Reply, replyError } from "./replies.js";
import { type DeliveryHook, keepHook } from "./sieve-hook.js";

/** RFC 5321 §4.5.3.2.7-ish: an LMTP client (our queue) idles briefly between messages. */
export const LMTP_SOCKET_TIMEOUT_MS = 300_000;
/** Our queue sends up to concurrencyPerDestination sessions; this bounds a misbehaving one. */
export const LMTP_MAX_CLIENTS = 500;
export const LMTP_MAX_RECIPIENTS = 1000;

export interface LmtpServerOptions {
  hostname: string;
  directory: Directory;
  store: MailStore;
  logger: Logger;
  maxMessageBytes: number;
  /** More Received fields than this: every recipient gets 554 5.4.6 (RFC 5321 §6.3). Default HOP_COUNT_LIMIT. */
  hopCountLimit?: number;
  hook?: DeliveryHook;
  redirect?: Redirector;
  metrics?: Registry;
}

interface SessionState {
  accounts: Map<string, Account>;
  log: Logger;
}

function ownEnhancedCodes(server: SMTPServer, session: SMTPServerSession): void {
  // smtp-server derives the enhanced code from the reply code (451 → 4.3.0); our
  // replies carry their own (451 4.4.3 for a directory outage), so tell it to add none.
  for (const conn of server.connections) {
    if (conn.session !== session) continue;
    const send = conn.send.bind(conn);
    conn.send = (code, data, context) =>
      send(code, data, typeof data === "string" && /^[245]\.\d{1,3}\.\d{1,3} /.test(data) ? false : context);
  }
}

function readAll(stream: SMTPServerDataStream): Promise<Buffer | null> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let oversized = false;
    stream.on("data", (chunk: Buffer) => {
      if (stream.sizeExceeded) oversized = true;
      if (!oversized) chunks.push(chunk);
    });
    // Client gone mid-DATA: smtp-server destroys the stream and 'end' never comes: nothing is stored.
    stream.on("error", () => resolve(null));
    stream.on("close", () => resolve(null));
    stream.on("end", () => resolve(oversized ? null : Buffer.concat(chunks)));
  });
}

export function createLmtpServer(options: LmtpServerOptions): SMTPServer {
  const hook = options.hook ?? keepHook;
  const states = new WeakMap<SMTPServerSession, SessionState>();
  const delivered = new Counter({
    name: "mailinfra_lmtp_recipients_total",
    help: "LMTP recipients by final reply class",
    labelNames: ["result"] as const,
    registers: options.metrics ? [options.metrics] : [],
  });
  const state = (session: SMTPServerSession): SessionState => {
    let s = states.get(session);
    if (!s) {
      s = {
        accounts: new Map(),
        log: options.logger.child({ cid: session.id, proto: "lmtp", remote: session.remoteAddress }),
      };
      states.set(session, s);
    }
    return s;
  };

  const server: SMTPServer = new SMTPServer({
    lmtp: true,
    name: options.hostname,
    banner: "mailinfra LMTP",
    size: options.maxMessageBytes,
    rejectOversized: true,
    authOptional: true,
    disabledCommands: ["AUTH", "STARTTLS"],
    logger: false,
    socketTimeout: LMTP_SOCKET_TIMEOUT_MS,
    maxClients: LMTP_MAX_CLIENTS,
    maxRecipients: LMTP_MAX_RECIPIENTS,
    onConnect(session, callback) {
      ownEnhancedCodes(server, session);
      state(session).log.debug("connected");
      callback();
    },
    onRcptTo(address, session, callback) {
      const s = state(session);
      options.directory.findByAddress(address.address).then(
        (account) => {
          if (!account) return callback(replyError(REPLIES.unknownUser));
          // RFC 1870 §6.1: a full mailbox is refused here, before the message is sent (rcpt-quota.ts).
          refuseForQuota(options.store, account, announcedSize(session), s.log).then((full) => {
            if (full) return callback(replyError(REPLIES.overQuota));
            s.accounts.set(address.address.toLowerCase(), account);
            callback();
          });
        },
        (err: unknown) => {
          s.log.error({ err }, "directory lookup failed");
          // Never "unknown user" when the directory is down: the sender must retry (RFC 3463 4.4.3).
          if (!(err instanceof DirectoryUnavailableError))
            s.log.warn("unexpected directory error, deferring");
          callback(replyError(REPLIES.directoryDown));
        },
      );
    },
    onData(stream, session, callback) {
      const s = state(session);
      readAll(stream).then(async (raw) => {
        if (!raw) return callback(null, "discarded"); // oversized (smtp-server answers 552) or client gone
        if (tooManyHops(raw, options.hopCountLimit ?? HOP_COUNT_LIMIT)) {
          s.log.warn({ rcpt: session.envelope.rcptTo.length, bytes: raw.length }, "mail loop: too many hops");
          delivered.inc({ result: "refused" }, session.envelope.rcptTo.length);
          return callback(
            null,
            session.envelope.rcptTo.map(() => replyError(REPLIES.tooManyHops)),
          );
        }
        const sender = session.envelope.mailFrom ? session.envelope.mailFrom.address : "";
        const deliverTo = async (address: string, account: Account): Promise<Reply> => {
          const message = Buffer.concat([
            traceHeaders({
              sender,
              recipient: address,
              helo: session.hostNameAppearsAs,
              remoteAddress: session.remoteAddress,
              hostname: options.hostname,
              id: session.id,
            }),
            raw,
          ]);
          return deliver({
            store: options.store,
            hook,
            account,
            sender,
            recipient: address,
            message,
            logger: s.log,
            ...(options.redirect ? { redirect: options.redirect } : {}),
          });
        };
        // Two recipients of one transaction that are the same account (alice@ and
        // her alias a.liddell@) get ONE copy, as Postfix's cleanup(8) drops
        // duplicate recipients: the later ones share the first one's reply.
        const perAccount = new Map<string, Promise<Reply>>();
        const replies: Array<Reply> = await Promise.all(
          session.envelope.rcptTo.map(async (rcpt) => {
            const account = s.accounts.get(rcpt.address.toLowerCase());
            if (!account) return REPLIES.unknownUser;
            const first = perAccount.get(account.uid);
            if (first) {
              s.log.info({ rcpt: rcpt.address, uid: account.uid }, "duplicate recipient, one copy delivered");
              return first;
            }
            const reply = deliverTo(rcpt.address, account);
            perAccount.set(account.uid, reply);
            return reply;
          }),
        );
        for (const [i, r] of replies.entries()) {
          delivered.inc({
            result: String(r.code)[0] === "2" ? "delivered" : r.code >= 500 ? "refused" : "deferred",
          });
          s.log.info(
            { rcpt: session.envelope.rcptTo[i]?.address, code: r.code, bytes: raw.length },
            "lmtp delivery",
          );
        }
        callback(
          null,
          replies.map((r): SMTPServerDataResult => (r.code === 250 ? r.text : replyError(r))),
        );
      });
    },
  });
  return server;
}
