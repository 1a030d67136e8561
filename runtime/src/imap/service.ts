/**
 * `mailinfra serve imap`: IMAP4rev1 (RFC 3501) with the extensions listed in
 * session.ts, on runtime.yaml's imap.listen (STARTTLS) and imap.tlsListen (993).
 *
 * imap.workers > 1 (default: one per CPU): the process systemd started is a
 * primary that forks that many workers (cluster/workers.ts), each serving
 * connections on the shared listening sockets; the primary keeps the
 * connection limits per address and per account and the failed-login counts
 * for all of them (cluster/limits.ts), restarts a dead worker and sums their
 * counters in /metrics. Mailbox changes made through one worker reach the
 * sessions of another as LMTP's do: through the store's files (the index and
 * fs.watch, store/mailbox.ts). Each process holds at most `ulimit -n`
 * descriptors: several workers hold more connections than one.
 */
import { availableParallelism } from "node:os";
import { AnvilServer } from "../cluster/anvil.js";
import {
  type ConnectionLimits,
  type ConnectionLimitValues,
  connectionLimitOps,
  LocalConnectionLimits,
  RemoteConnectionLimits,
} from "../cluster/limits.js";
import { isPoolWorker, joinPool, startWorkerPool } from "../cluster/workers.js";
import type { RuntimeConfig } from "../config/schema.js";
import type { RunningService, ServiceContext, StartService } from "../service.js";
import type { ImapLimits } from "./limits.js";
import { AUTH_FAILURE_WINDOW_MS, ImapServer } from "./server.js";

type ImapConfig = NonNullable<RuntimeConfig["imap"]>;

function imapSection(ctx: ServiceContext): ImapConfig {
  const config = ctx.config.imap;
  if (!config) throw new Error("runtime.yaml has no imap section");
  return config;
}

/** imap.workers, or one per CPU. */
export function imapWorkerCount(config: RuntimeConfig): number {
  return config.imap?.workers ?? availableParallelism();
}

/** True in a worker forked by startImapCluster. */
export function isImapWorker(): boolean {
  return isPoolWorker("imap");
}

function limitValues(config: ImapConfig): ConnectionLimitValues {
  return {
    maxConnectionsPerIp: config.limits.maxConnectionsPerIp,
    maxConnectionsPerUser: config.limits.maxConnectionsPerUser,
    authFailureWindowMs: AUTH_FAILURE_WINDOW_MS,
  };
}

/** The IMAP listeners in this process; `connectionLimits`: where they are counted (default: here). */
export async function startImap(
  ctx: ServiceContext,
  options: { connectionLimits?: ConnectionLimits } = {},
): Promise<RunningService> {
  const config = imapSection(ctx);
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
    connectionLimits: options.connectionLimits,
  });
  try {
    for (const a of config.listen) await server.listen(a, false);
    for (const a of config.tlsListen) await server.listen(a, true);
  } catch (err) {
    await server.drain(0);
    throw err;
  }
  logger.info({ addresses: server.addresses() }, "IMAP listening");
  return {
    name: "imap",
    addresses: () => server.addresses(),
    drain: (timeoutMs) => server.drain(timeoutMs),
    async healthy() {
      return server.addresses().length > 0;
    },
  };
}

/** A worker: the listeners, counting against the primary's limits. */
export async function startImapWorker(ctx: ServiceContext): Promise<RunningService> {
  const running = await startImap(ctx, {
    connectionLimits: new RemoteConnectionLimits(limitValues(imapSection(ctx))),
  });
  joinPool(ctx, running);
  return running;
}

/** The primary: `workers` workers and the host's connection limits. */
export async function startImapCluster(
  ctx: ServiceContext,
  options: { workers: number; workerArgs?: (configFile: string) => string[] },
): Promise<RunningService> {
  const limits = new LocalConnectionLimits(limitValues(imapSection(ctx)));
  const anvil = new AnvilServer(connectionLimitOps(limits), (worker) => limits.slots.releaseHolder(worker));
  const pool = await startWorkerPool(ctx, {
    service: "imap",
    role: "worker",
    workers: options.workers,
    workerArgs: options.workerArgs,
    anvil,
  });
  return {
    name: "imap",
    addresses: () => pool.addresses(),
    drain: (timeoutMs) => pool.stop(timeoutMs),
    async healthy() {
      return pool.healthy();
    },
  };
}

/** `serve imap`: one process (imap.workers: 1), or a primary and imap.workers workers. */
export const start: StartService = (ctx) => {
  if (isImapWorker()) return startImapWorker(ctx);
  const workers = imapWorkerCount(ctx.config);
  return workers > 1 ? startImapCluster(ctx, { workers }) : startImap(ctx);
};
