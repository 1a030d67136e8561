/**
 * Remote MX hosts for the outbound tests: smtp-server instances that record
 * what the queue sends (envelope, RFC 3461 parameters, TLS or not, sessions)
 * and answer as told: a 4xx greeting, a 4xx MAIL, per-recipient replies, DSN
 * advertised or not, a TLS stack that fails every handshake. Several hosts
 * share one port (the queue's remoteSmtpPort) on different loopback
 * addresses; the port is one the kernel had free on all of them.
 */
import { createServer } from "node:net";
import { SMTPServer, type SMTPServerOptions } from "smtp-server";
import type { TlsMaterial } from "../../src/service.js";
import { installEnhancedCodePassthrough } from "../../src/smtp/replies.js";

export interface Reply {
  code: number;
  text: string;
}

export interface HopMessage {
  from: string;
  to: string[];
  data: Buffer;
  secure: boolean;
  /** MAIL FROM RET= and ENVID= as the server parsed them. */
  mail: { ret?: string; envid?: string };
  /** RCPT TO NOTIFY= and ORCPT= by recipient. */
  rcpt: Record<string, { notify?: string[]; orcpt?: string }>;
}

export interface HopBehaviour {
  host: string;
  /** Advertise DSN (smtp-server hides it by default). */
  dsn?: boolean;
  /** Offer STARTTLS with these options (cert, key and anything tls.createSecureContext takes). */
  tls?: TlsMaterial & Partial<SMTPServerOptions>;
  greeting?: Reply;
  mail?: Reply;
  /** Reply for a recipient at RCPT; null/undefined: accept. */
  rcpt?: (address: string) => Reply | null | undefined;
}

export interface NextHop {
  host: string;
  messages: HopMessage[];
  /** TCP sessions opened to this host. */
  sessions: number;
  /** STARTTLS handshakes that failed here. */
  tlsErrors: number;
}

const refuse = (r: Reply) => Object.assign(new Error(r.text), { responseCode: r.code });

function hop(behaviour: HopBehaviour): { server: SMTPServer; state: NextHop } {
  const state: NextHop = { host: behaviour.host, messages: [], sessions: 0, tlsErrors: 0 };
  const server = new SMTPServer({
    hideENHANCEDSTATUSCODES: false,
    hideDSN: !behaviour.dsn,
    hideSTARTTLS: !behaviour.tls,
    ...(behaviour.tls ?? {}),
    authOptional: true,
    disabledCommands: ["AUTH"],
    disableReverseLookup: true,
    logger: false,
    onConnect(_session, callback) {
      state.sessions += 1;
      callback(behaviour.greeting ? refuse(behaviour.greeting) : undefined);
    },
    onMailFrom(_address, _session, callback) {
      callback(behaviour.mail ? refuse(behaviour.mail) : undefined);
    },
    onRcptTo(address, _session, callback) {
      const r = behaviour.rcpt?.(address.address);
      callback(r ? refuse(r) : undefined);
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("end", () => {
        const dsn = session.envelope.dsn;
        state.messages.push({
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : "",
          to: session.envelope.rcptTo.map((r) => r.address),
          data: Buffer.concat(chunks),
          secure: session.secure,
          mail: { ...(dsn?.ret ? { ret: dsn.ret } : {}), ...(dsn?.envid ? { envid: dsn.envid } : {}) },
          rcpt: Object.fromEntries(
            session.envelope.rcptTo.map((r) => [
              r.address,
              {
                ...(r.dsn?.notify ? { notify: [...r.dsn.notify] } : {}),
                ...(r.dsn?.orcpt ? { orcpt: r.dsn.orcpt } : {}),
              },
            ]),
          ),
        });
        callback(null, "2.0.0 queued");
      });
    },
  });
  server.on("error", (err: Error & { code?: string }) => {
    // smtp-server reports a failed handshake here (and goes on); anything else is unexpected
    if (/SSL|TLS|alert|protocol/i.test(`${err.code ?? ""} ${err.message}`)) state.tlsErrors += 1;
  });
  // Its replies carry their own RFC 3463 codes, sent as they are (as Postfix's).
  installEnhancedCodePassthrough(server);
  return { server, state };
}

export interface NextHops {
  port: number;
  hops: Map<string, NextHop>;
  close(): Promise<void>;
}

async function portFreeOn(hosts: string[]): Promise<number> {
  for (let tries = 0; tries < 20; tries++) {
    const probe = createServer();
    const port = await new Promise<number>((resolve, reject) => {
      probe.once("error", reject);
      probe.listen(0, hosts[0], () => {
        const a = probe.address();
        resolve(typeof a === "object" && a ? a.port : 0);
      });
    });
    await new Promise<void>((r) => probe.close(() => r()));
    const others = hosts.map(() => createServer());
    const ok = await Promise.all(
      others.map(
        (s, i) =>
          new Promise<boolean>((resolve) => {
            s.once("error", () => resolve(false));
            s.listen(port, hosts[i], () => resolve(true));
          }),
      ),
    );
    await Promise.all(others.map((s) => new Promise<void>((r) => (s.listening ? s.close(() => r()) : r()))));
    if (ok.every(Boolean)) return port;
  }
  throw new Error(`no port free on all of ${hosts.join(", ")}`);
}

/** Starts every host on one port. */
export async function startNextHops(behaviours: HopBehaviour[]): Promise<NextHops> {
  const port = await portFreeOn(behaviours.map((b) => b.host));
  const started: SMTPServer[] = [];
  const hops = new Map<string, NextHop>();
  for (const b of behaviours) {
    const { server, state } = hop(b);
    await new Promise<void>((resolve, reject) => {
      server.server.once("error", reject);
      server.listen(port, b.host, () => resolve());
    });
    started.push(server);
    hops.set(b.host, state);
  }
  return {
    port,
    hops,
    close: async () => {
      await Promise.all(started.map((s) => new Promise<void>((r) => s.close(() => r()))));
    },
  };
}
