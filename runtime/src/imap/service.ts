/**
 * `mailinfra serve imap`: IMAP4rev1 (RFC 3501) with the extensions listed in
 * session.ts, on runtime.yaml's imap.listen (STARTTLS) and imap.tlsListen (993).
 */
import type { StartService } from "../service.js";
import type { ImapLimits } from "./limits.js";
import { ImapServer } from "./server.js";

export const start: StartService = async (ctx) => {
  const config = ctx.config.imap;
  if (!config) throw new Error("runtime.yaml has no imap section");
  if (!ctx.directory) throw new Error("imap needs the ldap section (accounts)");
  if (!ctx.store) throw new Error("imap needs the store section");
  const l = config.limits;
  const limits: ImapLimits = {
    maxLineBytes: l.maxLineBytes,
    maxLiteralBytes: config.maxLiteralBytes,
    maxBadCommands: l.maxBadCommands,
    idleTimeoutMs: l.idleTimeoutSeconds * 1000,
    maxConnectionsPerIp: l.maxConnectionsPerIp,
    maxConnectionsPerUser: l.maxConnectionsPerUser,
    authFailuresBeforeDelay: l.authFailuresBeforeDelay,
    authFailureDelayMs: config.authFailureDelayMs,
  };
  // cli/ has already named the service in ctx.logger
  const logger = ctx.logger;
  const server = new ImapServer({
    directory: ctx.directory,
    store: ctx.store,
    logger,
    limits,
    tls: ctx.tls,
    loginDisabledWithoutTls: config.loginDisabledWithoutTls,
    metrics: ctx.metrics,
  });
  for (const a of config.listen) await server.listen(a, false);
  for (const a of config.tlsListen) await server.listen(a, true);
  logger.info({ addresses: server.addresses() }, "IMAP listening");
  return {
    name: "imap",
    addresses: () => server.addresses(),
    drain: (timeoutMs) => server.drain(timeoutMs),
    async healthy() {
      return server.addresses().length > 0;
    },
  };
};
