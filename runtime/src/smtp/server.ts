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
import { Resolver as CallbackResolver } from "node:dns";
import type { Logger } from "pino";
import {
  SMTPServer,
  type SMTPServerAddress,
  type SMTPServerDataStream,
  type SMTPServerSession,
} from "smtp-server";
import type { RuntimeConfig } from "../config/schema.js";
import type { Account, Directory } from "../directory/types.js";
import { DirectoryUnavailableError } from "../directory/types.js";
import type { ConnectionInfo, FilterPipeline, FilterTransaction, Verdict } from "../filter/types.js";
import type { Queue } from "../queue/index.js";
import { newQueueId } from "../queue/store.js";
import type { QueuedRecipient } from "../queue/types.js";
import type { TlsMaterial } from "../service.js";
import { type LocalDomains, parseAddress } from "./address.js";
import type { AuthThrottle } from "./auth-throttle.js";
import { DRAIN_CLOSE_MS, MAX_COMMAND_LINE_BYTES } from "./limits.js";
import { checkMessage, receivedHeader, removeHeaders, submissionHeaders, withProtocol } from "./message.js";
import type { SmtpMetrics } from "./metrics.js";
import type { Networks } from "./networks.js";
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
  throttle: AuthThrottle;
  metrics?: SmtpMetrics;
  tls?: TlsMaterial;
  dnsServers?: string[];
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
  installEnhancedCodePassthrough();
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

  const resolver =
    deps.dnsServers && deps.dnsServers.length > 0 ? new CallbackResolver({ timeout: 3000 }) : undefined;
  if (resolver && deps.dnsServers) resolver.setServers(deps.dnsServers);

  const server = new SMTPServer({
    name: hostname,
    banner: "mailinfra",
    size: config.maxMessageBytes,
    rejectOversized: true,
    maxRecipients: config.maxRecipients,
    maxClients: config.maxConnections,
    maxCommandLength: MAX_COMMAND_LINE_BYTES,
    socketTimeout: config.idleTimeoutSeconds * 1000,
    closeTimeout: DRAIN_CLOSE_MS,
    disableReverseLookup: !config.reverseLookup,
    ...(resolver ? { resolver } : {}),
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
      const trusted = kind === "relay" && (deps.trusted?.contains(session.remoteAddress) ?? false);
      const log = logger.child({
        cid: session.id,
        proto: "smtp",
        listener: kind,
        client: session.remoteAddress,
      });
      const info: ConnectionInfo = {
        remoteAddress: session.remoteAddress,
        remotePort: session.remotePort,
        ...(session.clientHostname && session.clientHostname !== `[${session.remoteAddress}]`
          ? { clientHostname: session.clientHostname }
          : {}),
        trustedNetwork: trusted,
        submission: kind === "submission",
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
      states.set(session.id, s);
      deps.metrics?.connection(kind);
      // RFC 4954 §4 / RFC 3207 §4: AUTH is neither offered nor taken before STARTTLS on submission.
      if (mayAuth && !session.secure) session.disabledCommands = ["AUTH"];
      log.info({ trusted }, "connect");
      s.tx
        .onConnect(info)
        .then((v) => {
          const err = verdictError(v);
          callback(err ? refuse(s, err, "connect") : undefined);
        })
        .catch((err: unknown) => {
          log.error({ err }, "connect stage failed");
          callback(reply(421, "4.3.0", "Service temporarily unavailable"));
        });
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
      if (deps.throttle.blocked(ip)) {
        s.log.warn({ user: auth.username }, "auth refused: too many failures from this address");
        callback(reply(454, "4.7.0", "Too many authentication failures, try again later"));
        return;
      }
      const login = auth.username ?? "";
      directory
        .authenticate(login, auth.password ?? "")
        .then((account: Account | null) => {
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
          const delay = deps.throttle.fail(ip);
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
        const bad = checkMessage(body);
        if (bad) {
          s.log.info({ reply: bad.message, bytes: body.length }, "message refused");
          throw bad;
        }
        const envelope = session.envelope;
        const mailFrom = envelope.mailFrom ? envelope.mailFrom.address : "";
        const rcptTo = envelope.rcptTo.map((r) => r.address);
        const verdict = await s.tx.onData(body, { helo: session.hostNameAppearsAs || "", mailFrom, rcptTo });
        const err = verdictError(verdict);
        if (err) throw refuse(s, err, "data");

        const id = newQueueId();
        const now = new Date();
        const user = session.user as AuthUser | undefined;
        const single = rcptTo.length === 1 ? rcptTo[0] : undefined;
        let prefix = receivedHeader({
          helo: session.hostNameAppearsAs || "",
          ...(session.clientHostname
            ? { clientHostname: session.clientHostname.replace(/^\[|\]$/g, "") }
            : {}),
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
          ...(session.tlsOptions ? { tls: `${session.tlsOptions.version} ${session.tlsOptions.name}` } : {}),
          date: now,
        });
        for (const [name, value] of verdict.addHeaders)
          prefix += `${name}: ${value.replace(/[\r\n]+/g, " ")}\r\n`;
        if (user || s.trusted) prefix += submissionHeaders(body, id, hostname, now);
        const kept = verdict.removeHeaders?.length ? removeHeaders(body, verdict.removeHeaders) : body;
        const message = Buffer.concat([Buffer.from(prefix), kept]);
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
  });

  server.on("error", (err) => logger.error({ err, listener: kind }, "smtp server error"));
  return server;
}

type EnqueueRequest = import("../queue/types.js").EnqueueRequest;

function asReply(s: ConnState, err: unknown): SmtpReplyError {
  if (err instanceof SmtpReplyError) return err;
  s.log.error({ err }, "transaction failed");
  return reply(451, "4.3.0", "Local error in processing, try again later");
}
