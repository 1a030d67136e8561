/**
 * One SMTP listener kind wired to smtp-server: the MX (port 25, local domains
 * only), the relay's port 25 (trusted networks may relay), and submission
 * (587: STARTTLS, then AUTH, then the user's own addresses only). smtp-server
 * owns the wire (smtp-stream) and the command grammar; this file decides.
 *
 * The relay decision (RFC 5321 §3.6, "never an open relay"): a recipient in a
 * local domain is checked in the directory; any other recipient needs an
 * authenticated submission session, or a client inside the relay's trusted
 * networks — judged by the socket's address only (no XCLIENT, XFORWARD or
 * PROXY; HELO and headers are never believed).
 */
import { Resolver } from "node:dns/promises";
import type { Socket } from "node:net";
import type { Logger } from "pino";
import type { SMTPServer, SMTPServerAddress, SMTPServerDataStream, SMTPServerSession } from "smtp-server";
import type { RuntimeConfig } from "../config/schema.js";
import type { Account, Directory } from "../directory/types.js";
import { DirectoryUnavailableError } from "../directory/types.js";
import type { ConnectionInfo, FilterPipeline, FilterTransaction, Verdict } from "../filter/types.js";
import { announcedSize } from "../lmtp/rcpt-quota.js";
import { logServerError } from "../log/index.js";
import type { Queue } from "../queue/index.js";
import { checkHops } from "../queue/loop.js";
import { newQueueId } from "../queue/store.js";
import type { QueuedRecipient } from "../queue/types.js";
import type { TlsMaterial } from "../service.js";
import { type LocalDomains, parseAddress } from "./address.js";
import type { Anvil } from "./anvil.js";
import { GatedSMTPServer, refuseSocket, TOO_MANY_CLIENTS } from "./gated-server.js";
import { type PregreetOutcome, pregreet } from "./greeting.js";
import { DRAIN_CLOSE_MS, MAX_COMMAND_LINE_BYTES, REVERSE_LOOKUP_TIMEOUT_MS } from "./limits.js";
import { assembleMessage, checkMessage, receivedHeader, submissionHeaders, withProtocol } from "./message.js";
import type { SmtpMetrics } from "./metrics.js";
import { Networks } from "./networks.js";
import type { QuotaCheck } from "./quota-check.js";
import { type ResolvedRecipient, resolveLocalRecipient } from "./recipients.js";
import { installEnhancedCodePassthrough, reply, SmtpReplyError } from "./replies.js";

export type ListenerKind = "mx" | "relay" | "submission";
type SmtpConfig = NonNullable<RuntimeConfig["smtp"]>;

export interface ListenerDeps {
  kind: ListenerKind;
  config: SmtpConfig;
  hostname: string;
  domains: LocalDomains;
  directory: Directory;
  queue: Queue;
  pipeline: FilterPipeline;
  logger: Logger;
  /** relay role only. */
  trusted?: Networks;
  /** Per-client limits shared by the host's acceptors (anvil.ts). */
  anvil: Anvil;
  metrics?: SmtpMetrics;
  tls?: TlsMaterial;
  dnsServers?: string[];
  /** smtp.quotaCheck: local recipients' stores asked at RCPT (quota-check.ts); absent: off. */
  quotaCheck?: QuotaCheck;
}

interface AuthUser {
  uid: string;
  addresses: string[];
}

interface ConnState {
  log: Logger;
  info: ConnectionInfo;
  trusted: boolean;
  /** One filter transaction per connection (filter/types.ts); reset() between messages. */
  tx: FilterTransaction;
  /** The HELO name the filter has seen (EHLO may be sent again). */
  heloSeen: string | undefined;
  /** A MAIL FROM was seen since the last reset(). */
  txUsed: boolean;
  rcpts: Map<string, ResolvedRecipient | { address: string; route: { kind: "smtp" } }>;
}

function verdictError(v: Verdict): SmtpReplyError | null {
  if (v.action === "reject")
    return reply(v.code ?? 550, v.enhanced ?? "5.7.1", v.message ?? "Rejected by policy");
  if (v.action === "tempfail") {
    return reply(v.code ?? 451, v.enhanced ?? "4.7.1", v.message ?? "Try again later");
  }
  return null;
}

/** Reads DATA into memory, keeping at most `max` bytes (smtp-server answers 552 for more). */
function readData(stream: SMTPServerDataStream, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    stream.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size <= max) chunks.push(chunk);
    });
    stream.once("end", () => resolve(Buffer.concat(chunks)));
    stream.once("error", reject);
  });
}

export function createListener(deps: ListenerDeps): SMTPServer {
  const { kind, config, hostname, domains, directory, queue, pipeline, logger } = deps;
  const states = new Map<string, ConnState>();
  const mayAuth = kind === "submission";

  const state = (session: SMTPServerSession): ConnState => {
    const s = states.get(session.id);
    if (!s) throw reply(421, "4.3.0", "Session state lost");
    return s;
  };

  /** smtp-server has no HELO hook: the filter's helo stage runs at the first MAIL FROM after each HELO/EHLO. */
  const heloChecked = async (s: ConnState, session: SMTPServerSession): Promise<FilterTransaction> => {
    const helo = session.hostNameAppearsAs || "";
    if (s.heloSeen !== helo) {
      s.heloSeen = helo;
      const err = verdictError(await s.tx.onHelo(helo));
      if (err) throw refuse(s, err, "helo");
    }
    return s.tx;
  };

  const refuse = (s: ConnState, err: SmtpReplyError, stage: string): SmtpReplyError => {
    s.log.info(
      { verdict: s.tx.record(), stage, reply: `${err.responseCode} ${err.message}` },
      "filter verdict",
    );
    return err;
  };

  const resolver = new Resolver({ timeout: REVERSE_LOOKUP_TIMEOUT_MS, tries: 1 });
  if (deps.dnsServers && deps.dnsServers.length > 0) resolver.setServers(deps.dnsServers);
  const clientName = async (ip: string): Promise<string | undefined> => {
    if (!config.reverseLookup) return undefined;
    const names = await resolver.reverse(ip).catch(() => [] as string[]);
    const name = names[0]?.replace(/\.$/, "").toLowerCase();
    // PTR records belong to whoever owns the address: only a plain host name may reach a header.
    return name && HOST_NAME.test(name) ? name : undefined;
  };

  /** Connections that passed the gate, waiting for smtp-server's onConnect (same tick). */
  const admitted = new Map<string, ConnState>();
  const greeting = config.greeting;
  const exempt = new Networks(greeting.exemptNetworks);
  const silent: PregreetOutcome = { earlyBytes: 0, waitedMs: 0, gone: false };

  /**
   * The connection stage, before smtp-server sees the socket: the pause before
   * the greeting (greeting.ts), reverse DNS meanwhile, then the filter's
   * connect checks. A refusal is written here and the socket closed.
   */
  const gate = async (socket: Socket, id: string): Promise<boolean> => {
    const ip = (socket.remoteAddress ?? "").replace(/^::ffff:/i, "").toLowerCase();
    const trusted = kind === "relay" && (deps.trusted?.contains(ip) ?? false);
    const port = socket.remotePort ?? 0;
    // The PTR lookup (when configured) runs during the anvil's round trip and the pause.
    const named = clientName(ip);
    const seen = await deps.anvil.connect(ip, port, kind !== "submission" && !trusted);
    if (seen.full !== undefined) {
      // smtp.maxConnections for the host (all acceptors): no pause, no checks, like smtp-server's maxClients.
      // RFC 3463 §3.4: X.3.2 "system not accepting network messages".
      logger.warn(
        { proto: "smtp", listener: kind, client: ip, reason: seen.full },
        "connection refused: host full",
      );
      refuseSocket(socket, TOO_MANY_CLIENTS, 2000);
      return false;
    }
    if (seen.rate) socket.once("close", () => deps.anvil.disconnect(ip, port));
    const pause =
      kind === "submission" || trusted || exempt.contains(ip) || seen.pregreetPassed ? 0 : greeting.pauseMs;
    const [pre, hostname_] = await Promise.all([
      pause > 0 ? pregreet(socket, pause, greeting.partialBanner ? `${hostname} ESMTP` : undefined) : silent,
      named,
    ]);
    const log = logger.child({ cid: id, proto: "smtp", listener: kind, client: ip });
    if (pre.gone || socket.destroyed) {
      log.info({ earlyBytes: pre.earlyBytes, waitedMs: pre.waitedMs }, "client left before the greeting");
      return false;
    }
    const info: ConnectionInfo = {
      remoteAddress: ip,
      remotePort: port,
      ...(hostname_ ? { clientHostname: hostname_ } : {}),
      trustedNetwork: trusted,
      submission: kind === "submission",
      ...(pre.waitedMs > 0 ? { greetWaitMs: pre.waitedMs } : {}),
      ...(pre.earlyBytes > 0 ? { earlyTalker: true, earlyBytes: pre.earlyBytes } : {}),
      ...(seen.rate ? { sharedRate: seen.rate } : {}),
    };
    const s: ConnState = {
      log,
      info,
      trusted,
      tx: pipeline.transaction(),
      heloSeen: undefined,
      txUsed: false,
      rcpts: new Map(),
    };
    deps.metrics?.connection(kind);
    log.info({ trusted, ...(hostname_ ? { hostname: hostname_ } : {}) }, "connect");
    let err: SmtpReplyError | null;
    try {
      err = verdictError(await s.tx.onConnect(info));
      if (err) refuse(s, err, "connect");
    } catch (e) {
      log.error({ err: e }, "connect stage failed");
      err = reply(421, "4.3.0", "Service temporarily unavailable");
    }
    if (err) {
      s.tx.close?.();
      refuseSocket(socket, `${err.responseCode} ${err.message}`, 2000);
      return false;
    }
    if (pre.waitedMs > 0) deps.anvil.pregreetPass(ip);
    admitted.set(id, s);
    return true;
  };

  const server = new GatedSMTPServer(
    {
      name: hostname,
      banner: "mailinfra",
      size: config.maxMessageBytes,
      rejectOversized: true,
      maxRecipients: config.maxRecipients,
      maxClients: config.maxConnections,
      maxCommandLength: MAX_COMMAND_LINE_BYTES,
      socketTimeout: config.idleTimeoutSeconds * 1000,
      closeTimeout: DRAIN_CLOSE_MS,
      // The gate has looked the name up already (during the pause).
      disableReverseLookup: true,
      logger: false,
      // RFC 2034 and RFC 3461: smtp-server hides both unless asked.
      hideENHANCEDSTATUSCODES: false,
      hideDSN: false,
      // RFC 8689: not offered, the queue cannot promise TLS on every onward hop.
      hideREQUIRETLS: true,
      // STARTTLS needs a certificate; without one it is simply not offered (RFC 3207 is optional on 25).
      hideSTARTTLS: !deps.tls,
      ...(deps.tls ? { key: deps.tls.key, cert: deps.tls.cert } : {}),
      ...(mayAuth
        ? { authMethods: ["PLAIN", "LOGIN"], authOptional: false, allowInsecureAuth: false }
        : { disabledCommands: ["AUTH"], authOptional: true }),
      useXClient: false,
      useXForward: false,
      useProxy: false,

      onConnect(session, callback) {
        // Answered synchronously: the gate did the connection stage, and the parser must not run before the 220.
        const s = admitted.get(session.id);
        admitted.delete(session.id);
        if (!s) {
          callback(reply(421, "4.3.0", "Session state lost"));
          return;
        }
        states.set(session.id, s);
        // RFC 4954 §4 / RFC 3207 §4: AUTH is neither offered nor taken before STARTTLS on submission.
        if (mayAuth && !session.secure) session.disabledCommands = ["AUTH"];
        callback();
      },

      onSecure(_socket, session, callback) {
        if (mayAuth) session.disabledCommands = [];
        callback();
      },

      onClose(session) {
        const s = states.get(session.id);
        if (!s) return;
        s.tx.close?.();
        s.log.info("disconnect");
        states.delete(session.id);
      },

      onAuth(auth, session, callback) {
        const s = state(session);
        const ip = session.remoteAddress;
        if (auth.method !== "PLAIN" && auth.method !== "LOGIN") {
          callback(reply(504, "5.5.4", "Unrecognized authentication type"));
          return;
        }
        const login = auth.username ?? "";
        deps.anvil
          .authBlocked(ip)
          .then(async (blocked) => {
            if (blocked) {
              s.log.warn({ user: auth.username }, "auth refused: too many failures from this address");
              callback(reply(454, "4.7.0", "Too many authentication failures, try again later"));
              return;
            }
            const account: Account | null = await directory.authenticate(login, auth.password ?? "");
            if (account) {
              s.log.info({ user: account.uid }, "auth ok");
              const user: AuthUser = {
                uid: account.uid,
                addresses: account.addresses.map((a) => a.toLowerCase()),
              };
              s.info.authenticatedUser = account.uid;
              s.tx.onAuth?.(account.uid);
              callback(null, { user });
              return;
            }
            const delay = await deps.anvil.authFail(ip);
            s.log.warn({ user: login, delayMs: delay }, "auth failed");
            setTimeout(() => callback(reply(535, "5.7.8", "Authentication credentials invalid")), delay);
          })
          .catch((err: unknown) => {
            s.log.error(
              { err: err instanceof DirectoryUnavailableError ? err.message : err },
              "auth lookup failed",
            );
            callback(reply(454, "4.7.0", "Temporary authentication failure"));
          });
      },

      onMailFrom(address: SMTPServerAddress, session, callback) {
        const s = state(session);
        (async () => {
          if (s.txUsed && s.tx.reset) s.tx.reset();
          else if (s.txUsed) {
            // A pipeline without reset(): a fresh transaction that sees the connection again.
            s.tx.close?.();
            s.tx = pipeline.transaction();
            s.heloSeen = undefined;
            const err = verdictError(await s.tx.onConnect(s.info));
            if (err) throw refuse(s, err, "connect");
          }
          s.txUsed = true;
          s.rcpts = new Map();
          const tx = await heloChecked(s, session);
          const sender = address.address;
          if (kind === "submission") {
            const user = session.user as AuthUser | undefined;
            if (!user) {
              throw reply(
                530,
                "5.7.0",
                session.secure ? "Authentication required" : "Must issue a STARTTLS command first",
              );
            }
            // RFC 6409 §6.1: the submission server may check the sender against the authenticated identity.
            if (!user.addresses.includes(sender.toLowerCase())) {
              throw reply(553, "5.7.1", `<${sender}>: Sender address not owned by user ${user.uid}`);
            }
          }
          // Routing syntax in a sender is odd but harmless (nothing is sent there but DSNs); bad syntax is not.
          const parsedSender = sender === "" ? null : parseAddress(sender);
          if (parsedSender === "syntax" || parsedSender === "too-long") {
            throw reply(553, "5.1.7", `<${sender}>: Sender address syntax not accepted`);
          }
          const err = verdictError(await tx.onMailFrom(sender));
          if (err) throw refuse(s, err, "mail");
        })().then(
          () => callback(),
          (err: unknown) => callback(asReply(s, err)),
        );
      },

      onRcptTo(address: SMTPServerAddress, session, callback) {
        const s = state(session);
        (async () => {
          const raw =
            address.address.toLowerCase() === "postmaster" ? `postmaster@${domains.first}` : address.address;
          const parsed = parseAddress(raw);
          if (parsed === "routing") {
            throw reply(
              550,
              "5.7.1",
              `<${raw}>: Relay access denied: routing syntax (%, !, quotes) not accepted`,
            );
          }
          if (parsed === "too-long") throw reply(553, "5.1.3", "Address too long (RFC 5321 §4.5.3.1)");
          if (parsed === "syntax") throw reply(553, "5.1.3", `<${raw}>: Bad recipient address syntax`);
          let resolved: ResolvedRecipient;
          if (domains.has(parsed.domain)) {
            resolved = await resolveLocalRecipient(directory, domains, parsed.address);
          } else if ((kind === "submission" && session.user) || (kind === "relay" && s.trusted)) {
            resolved = { address: parsed.address, route: { kind: "smtp" } };
          } else {
            throw reply(554, "5.7.1", `<${raw}>: Relay access denied`);
          }
          // Before the filter's RCPT stage, so its record lists only recipients that were taken.
          if (deps.quotaCheck && resolved.route.kind === "lmtp") {
            await checkQuota(s, deps.quotaCheck, resolved, raw, announcedSize(session), deps.metrics);
          }
          const err = verdictError(await s.tx.onRcptTo(parsed.address));
          if (err) throw refuse(s, err, "rcpt");
          s.rcpts.set(address.address.toLowerCase(), resolved);
        })().then(
          () => callback(),
          (err: unknown) => callback(asReply(s, err)),
        );
      },

      onData(stream, session, callback) {
        const s = state(session);
        (async () => {
          const body = await readData(stream, config.maxMessageBytes);
          if (stream.sizeExceeded) throw reply(552, "5.3.4", "Message size exceeds fixed limit");
          // RFC 5321 §6.3: a looping message is refused before anything is queued.
          const bad = checkMessage(body) ?? checkHops(body, config.hopCountLimit);
          if (bad) {
            s.log.info({ reply: bad.message, bytes: body.length }, "message refused");
            throw bad;
          }
          const envelope = session.envelope;
          const mailFrom = envelope.mailFrom ? envelope.mailFrom.address : "";
          const rcptTo = envelope.rcptTo.map((r) => r.address);
          const id = newQueueId();
          const now = new Date();
          const user = session.user as AuthUser | undefined;
          const single = rcptTo.length === 1 ? rcptTo[0] : undefined;
          const trace = receivedHeader({
            helo: session.hostNameAppearsAs || "",
            ...(s.info.clientHostname ? { clientHostname: s.info.clientHostname } : {}),
            clientAddress: session.remoteAddress,
            byHost: hostname,
            protocol: withProtocol({
              esmtp: session.openingCommand === "EHLO",
              tls: session.secure,
              auth: Boolean(user),
              utf8: Boolean(envelope.smtpUtf8),
            }),
            queueId: id,
            ...(single ? { forRecipient: single } : {}),
            ...(session.tlsOptions
              ? { tls: `${session.tlsOptions.version} ${session.tlsOptions.name}` }
              : {}),
            date: now,
          });
          // The checks see the message as it will be delivered: our Received on top (spamd's relay
          // rules read it; without it every message scores NO_RELAYS), Date and Message-ID added
          // for a submission, as Postfix's cleanup(8) hands header_checks its smtpd's Received.
          const added = user || s.trusted ? submissionHeaders(body, id, hostname, now) : "";
          const scanned = Buffer.concat([Buffer.from(trace + added), body]);
          const verdict = await s.tx.onData(scanned, {
            helo: session.hostNameAppearsAs || "",
            mailFrom,
            rcptTo,
          });
          const err = verdictError(verdict);
          if (err) throw refuse(s, err, "data");
          const message = assembleMessage(trace, scanned, verdict);
          if (verdict.disposition === "discard") {
            // Postfix DISCARD: the client is told 250, the message goes nowhere.
            s.log.info(
              { queueId: id, from: mailFrom, rcpt: rcptTo, verdict: s.tx.record() },
              "discarded by policy",
            );
            deps.metrics?.message(kind, "discarded");
            return id;
          }

          const recipients: EnqueueRequest["recipients"] = envelope.rcptTo.map((r) => {
            const resolved = s.rcpts.get(r.address.toLowerCase());
            if (!resolved) throw reply(451, "4.3.0", "Recipient state lost, try again");
            return {
              address: resolved.address,
              original: r.address,
              route: resolved.route,
              ...(r.dsn?.notify ? { notify: r.dsn.notify as NonNullable<QueuedRecipient["notify"]> } : {}),
              ...(r.dsn?.orcpt ? { orcpt: r.dsn.orcpt } : {}),
            };
          });
          // header_checks(5) REDIRECT replaces every recipient; BCC adds one, as with NOTIFY=NEVER.
          if (verdict.redirect) {
            recipients.splice(0, recipients.length, {
              address: verdict.redirect,
              original: verdict.redirect,
              route: { kind: "resolve" },
            });
          }
          for (const bcc of verdict.bcc ?? []) {
            if (recipients.some((r) => r.address.toLowerCase() === bcc)) continue;
            recipients.push({ address: bcc, original: bcc, route: { kind: "resolve" }, notify: ["NEVER"] });
          }
          const dsn = envelope.dsn;
          await queue.enqueue(message, {
            id,
            mailFrom,
            recipients,
            ...(dsn && (dsn.ret || dsn.envid)
              ? {
                  dsn: {
                    ...(dsn.ret === "FULL" || dsn.ret === "HDRS" ? { ret: dsn.ret } : {}),
                    ...(dsn.envid ? { envid: dsn.envid } : {}),
                  },
                }
              : {}),
            client: { address: session.remoteAddress, helo: session.hostNameAppearsAs || "" },
            ...(verdict.disposition === "hold" ? { hold: true } : {}),
          });
          s.log.info(
            { queueId: id, from: mailFrom, rcpt: rcptTo, bytes: message.length, verdict: s.tx.record() },
            "queued",
          );
          deps.metrics?.message(kind, verdict.disposition === "hold" ? "held" : "queued");
          return id;
        })().then(
          (id) => callback(null, `2.0.0 Ok: queued as ${id}`),
          (err: unknown) => {
            deps.metrics?.message(kind, "rejected");
            callback(asReply(s, err));
          },
        );
      },
    },
    gate,
  );

  server.on("error", (err) => logServerError(logger.child({ listener: kind }), err, "smtp server error"));
  installEnhancedCodePassthrough(server);
  return server;
}

type EnqueueRequest = import("../queue/types.js").EnqueueRequest;

/** RFC 1123 host names only (letters, digits, hyphens, dots). */
const HOST_NAME =
  /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/;

/**
 * RFC 1870 §6.1 / RFC 3463 X.2.2: the store says the mailbox is full → 552
 * 5.2.2 now, logged like a filter verdict. Anything else: accepted as before.
 */
async function checkQuota(
  s: ConnState,
  quota: QuotaCheck,
  resolved: ResolvedRecipient,
  raw: string,
  size: number,
  metrics: SmtpMetrics | undefined,
): Promise<void> {
  const host = resolved.route.kind === "lmtp" ? resolved.route.host : undefined;
  const answer = await quota.check(host, resolved.address, size);
  metrics?.quotaCheck(answer.full ? (answer.cached ? "full-cached" : "full") : answer.reason);
  if (!answer.full) {
    if (answer.reason !== "ok") {
      s.log.debug({ rcpt: resolved.address, ...answer }, "quota check inconclusive, accepted");
    }
    return;
  }
  const err = reply(552, "5.2.2", `<${raw}>: Recipient address rejected: Mailbox full`);
  const record = s.tx.record();
  const checks = Array.isArray(record.checks) ? record.checks : [];
  s.log.info(
    {
      verdict: {
        ...record,
        stage: "rcpt",
        action: "reject",
        code: 552,
        enhanced: "5.2.2",
        decidedBy: "quota-status",
        rejectedRecipients: [{ address: raw, check: "quota-status", code: 552, enhanced: "5.2.2" }],
        checks: [
          ...checks,
          {
            check: "quota-status",
            stage: "rcpt",
            outcome: "fail",
            detail: `${answer.host}: ${answer.reply}${answer.cached ? " (cached)" : ""}`,
            ms: answer.ms,
          },
        ],
      },
      stage: "rcpt",
      rcpt: raw,
      size,
      reply: `${err.responseCode} ${err.message}`,
    },
    "quota verdict",
  );
  throw err;
}

function asReply(s: ConnState, err: unknown): SmtpReplyError {
  if (err instanceof SmtpReplyError) return err;
  if ((err as { code?: unknown }).code === "ECONNECTION") {
    // The client hung up in the middle of DATA: nothing was queued, nobody to answer.
    s.log.info({ reason: (err as Error).message }, "client left during DATA");
    return reply(451, "4.3.0", "Connection closed during DATA");
  }
  s.log.error({ err }, "transaction failed");
  return reply(451, "4.3.0", "Local error in processing, try again later");
}
