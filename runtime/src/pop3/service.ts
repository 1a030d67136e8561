/**
 * `mailinfra serve pop3`: POP3 (RFC 1939) on `pop3.listen` with STLS, and
 * implicit TLS on `pop3.tlsListen`. Needs `pop3`, `store`, `ldap` (and `tls`
 * for STLS / 995).
 */
import { stat } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { Counter } from "prom-client";
import { parseListenAddress } from "../config/load.js";
import type { RunningService, ServiceContext, StartService } from "../service.js";
import { AuthThrottle } from "./auth-throttle.js";
import { limitsFromConfig, type Pop3Limits } from "./limits.js";
import { createPop3Server, type Pop3Listener, secureContextOf } from "./server.js";
import type { Pop3ServerContext } from "./session.js";

export interface Pop3ServiceOptions {
  /** Overrides for tests (e.g. a shorter auth failure delay). */
  limits?: Partial<Pop3Limits>;
}

export async function startPop3(
  ctx: ServiceContext,
  options: Pop3ServiceOptions = {},
): Promise<RunningService> {
  const { config } = ctx;
  const pop3 = config.pop3;
  if (!pop3) throw new Error("runtime.yaml: `pop3` section missing for the pop3 service");
  if (!ctx.store || !config.store)
    throw new Error("runtime.yaml: `store` section missing for the pop3 service");
  if (!ctx.directory)
    throw new Error("runtime.yaml: `ldap` section missing: logins are checked in the directory");
  if (pop3.tlsListen.length > 0 && !ctx.tls)
    throw new Error("runtime.yaml: pop3.tlsListen needs the `tls` section");
  if (pop3.loginDisabledWithoutTls && !ctx.tls) {
    throw new Error("runtime.yaml: pop3.loginDisabledWithoutTls needs the `tls` section (STLS)");
  }
  const logger = ctx.logger.child({ service: "pop3" });
  const limits: Pop3Limits = { ...limitsFromConfig(pop3.limits, pop3.authFailureDelayMs), ...options.limits };
  const secureContext = secureContextOf(ctx.tls);
  const logins = new Counter({
    name: "mailinfra_pop3_logins_total",
    help: "POP3 logins by result",
    labelNames: ["result"] as const,
    registers: [ctx.metrics],
  });
  const serverCtx: Pop3ServerContext = {
    hostname: config.host.name,
    directory: ctx.directory,
    store: ctx.store,
    limits,
    throttle: new AuthThrottle(limits.authFailuresBeforeDelay, limits.authFailureDelayMs),
    perUser: new Map(),
    loginDisabledWithoutTls: pop3.loginDisabledWithoutTls,
    countLogin: (result) => logins.inc({ result }),
    ...(secureContext ? { secureContext } : {}),
  };
  const perIp = new Map<string, number>();
  const listeners: Pop3Listener[] = [];
  const bound: string[] = [];
  const plan = [
    ...pop3.listen.map((a) => ({ address: a, tls: false })),
    ...pop3.tlsListen.map((a) => ({ address: a, tls: true })),
  ];
  for (const { address, tls } of plan) {
    const listener = createPop3Server(serverCtx, logger, tls, perIp);
    const { host = "0.0.0.0", port } = parseListenAddress(address);
    await new Promise<void>((resolve, reject) => {
      listener.server.once("error", reject);
      listener.server.listen(port, host, () => {
        listener.server.off("error", reject);
        resolve();
      });
    });
    const info = listener.server.address() as AddressInfo;
    bound.push(info.family === "IPv6" ? `[${info.address}]:${info.port}` : `${info.address}:${info.port}`);
    listeners.push(listener);
  }
  logger.info({ addresses: bound }, "pop3 listening");
  const storeRoot = config.store.root;
  return {
    name: "pop3",
    addresses: () => [...bound],
    async drain(timeoutMs: number) {
      const closed = Promise.all(
        listeners.map((l) => new Promise<void>((resolve) => l.server.close(() => resolve()))),
      );
      const deadline = new Promise<void>((resolve) => setTimeout(resolve, timeoutMs).unref());
      await Promise.race([closed, deadline]);
      for (const l of listeners) for (const s of l.sessions) s.shutdown();
      await closed;
    },
    async healthy() {
      try {
        return (await stat(storeRoot)).isDirectory();
      } catch {
        return false;
      }
    },
  };
}

export const start: StartService = (ctx) => startPop3(ctx);
