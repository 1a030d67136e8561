/**
 * The POP3 listener: plain (with STLS when a certificate is configured) or
 * implicit TLS (995), the per-address connection limit, one pino child per
 * connection.
 */
import { createServer, type Server, type Socket } from "node:net";
import { createSecureContext, type SecureContext, TLSSocket } from "node:tls";
import type { Logger } from "pino";
import { newConnectionId } from "../log/index.js";
import type { TlsMaterial } from "../service.js";
import { type Pop3ServerContext, Pop3Session } from "./session.js";
import { statusLine } from "./wire.js";

export interface Pop3Listener {
  server: Server;
  sessions: Set<Pop3Session>;
}

export function secureContextOf(tls: TlsMaterial | undefined): SecureContext | undefined {
  return tls ? createSecureContext({ key: tls.key, cert: tls.cert, minVersion: "TLSv1.2" }) : undefined;
}

export function createPop3Server(
  ctx: Pop3ServerContext,
  logger: Logger,
  implicitTls: boolean,
  perIp: Map<string, number>,
): Pop3Listener {
  const sessions = new Set<Pop3Session>();
  const server = createServer((raw: Socket) => {
    const ip = raw.remoteAddress ?? "unknown";
    const log = logger.child({ cid: newConnectionId(), proto: "pop3", remote: `${ip}:${raw.remotePort}` });
    raw.on("error", (err) => log.debug({ err }, "socket error"));
    const count = perIp.get(ip) ?? 0;
    if (count >= ctx.limits.maxConnectionsPerIp) {
      log.warn({ count }, "too many connections from this address");
      raw.end(statusLine(false, "[SYS/TEMP] Too many connections from your address"));
      return;
    }
    perIp.set(ip, count + 1);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      const n = (perIp.get(ip) ?? 1) - 1;
      if (n <= 0) perIp.delete(ip);
      else perIp.set(ip, n);
    };
    raw.once("close", release);
    let socket: Socket = raw;
    if (implicitTls) {
      if (!ctx.secureContext) {
        raw.destroy();
        return;
      }
      const secure = new TLSSocket(raw, { isServer: true, secureContext: ctx.secureContext });
      secure.on("error", (err) => {
        log.debug({ err }, "TLS error");
        raw.destroy();
      });
      socket = secure;
      secure.once("secure", () => start());
    } else start();
    function start(): void {
      const session = new Pop3Session(socket, ctx, log, ip, implicitTls, () => {
        sessions.delete(session);
        release();
      });
      sessions.add(session);
    }
  });
  return { server, sessions };
}
