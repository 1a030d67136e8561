/**
 * `mailinfra serve smtp`: the host's SMTP roles and the queue behind them.
 *   mx     smtp.mx.listen             port 25, local domains only, no AUTH
 *   relay  smtp.relay.listen          port 25, trusted networks may relay
 *          smtp.relay.submissionListen  587, STARTTLS + AUTH required
 * Every accepted message goes through the durable queue (queue/), which
 * delivers by LMTP to the stores and by SMTP to remote MX hosts.
 * startSmtp() is one process doing both; `start` (serve smtp) spreads the
 * listeners over smtp.workers acceptor processes (cluster.ts).
 */
import type { AddressInfo } from "node:net";
import type { SMTPServer } from "smtp-server";
import type { RuntimeConfig } from "../config/schema.js";
import type { Directory } from "../directory/types.js";
import { createFilterPipeline, loadMaps } from "../filter/index.js";
import type { FilterPipeline } from "../filter/types.js";
import { openQueue, type Queue } from "../queue/index.js";
import type { RunningService, ServiceContext, StartService } from "../service.js";
import { LocalDomains } from "./address.js";
import { type Anvil, anvilLimits, LocalAnvil } from "./anvil.js";
import { isSmtpWorker, smtpWorkerCount, startSmtpCluster, startSmtpWorker } from "./cluster.js";
import { createSmtpMetrics, type SmtpMetrics } from "./metrics.js";
import { Networks } from "./networks.js";
import { QuotaCheck } from "./quota-check.js";
import { createRouter } from "./recipients.js";
import { createListener, type ListenerKind } from "./server.js";

export interface SmtpServiceOptions {
  /** The filtering pipeline; defaults to filter/'s, built from runtime.yaml's `filter` section. */
  pipeline?: FilterPipeline;
  /**
   * The queue to write to; default: the full queue (store + delivery runner)
   * opened here. An acceptor process (cluster.ts) passes its acceptor queue.
   */
  queue?: Queue;
  /** The per-client limits; default: this process's own (anvil.ts). An acceptor passes the primary's. */
  anvil?: Anvil;
}

/** "host:port", "[v6]:port", ":port" → listen() arguments. */
export function parseListen(address: string): { host: string; port: number } {
  const match = address.match(/^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/);
  if (!match) throw new Error(`bad listen address ${JSON.stringify(address)}`);
  return { host: match[1] ?? (match[2] || "0.0.0.0"), port: Number(match[3]) };
}

/** The runtime.yaml sections `serve smtp` cannot run without, checked once. */
export function smtpSections(ctx: ServiceContext): {
  smtp: NonNullable<RuntimeConfig["smtp"]>;
  queue: NonNullable<RuntimeConfig["queue"]>;
  directory: Directory;
} {
  const { smtp, queue } = ctx.config;
  if (!smtp) throw new Error("runtime.yaml: `smtp` section missing for the smtp service");
  if (!queue) throw new Error("runtime.yaml: `queue` section missing for the smtp service");
  if (!ctx.directory)
    throw new Error("runtime.yaml: `ldap` section missing: recipients are checked in the directory");
  return { smtp, queue, directory: ctx.directory };
}

/**
 * The host's delivering queue (the single process's, or the cluster primary's)
 * and the SMTP metrics that report its size; `given` replaces the opened queue.
 */
export async function openSmtpQueue(
  ctx: ServiceContext,
  given?: Queue,
): Promise<{ queue: Queue; metrics: SmtpMetrics }> {
  const { smtp, queue: queueConfig, directory } = smtpSections(ctx);
  const { config, logger } = ctx;
  // The cluster's acceptors build the pipeline; a bad map (file:line) stops the primary here first.
  if (!given) loadMaps(config.filter);
  let queue: Queue | undefined = given;
  const metrics = createSmtpMetrics(ctx.metrics, () => queue?.size() ?? 0);
  if (!queue) {
    const dnsServers = queueConfig.dnsServers ?? config.filter.dnsServers;
    queue = await openQueue({
      onDelivery: metrics.delivery,
      config: queueConfig,
      hostname: config.host.name,
      router: createRouter(directory, new LocalDomains(smtp.domains)),
      logger: logger.child({ service: "queue" }),
      ...(dnsServers ? { dnsServers } : {}),
    });
  }
  return { queue, metrics };
}

export async function startSmtp(
  ctx: ServiceContext,
  options: SmtpServiceOptions = {},
): Promise<RunningService> {
  const { config, logger } = ctx;
  const { smtp, queue: queueConfig, directory } = smtpSections(ctx);
  const roles = new Set(config.host.roles);
  const wantMx = Boolean(smtp.mx) && (roles.has("mx") || roles.has("test"));
  const wantRelay = Boolean(smtp.relay) && (roles.has("relay") || roles.has("test"));
  if (wantRelay && (smtp.relay?.submissionListen.length ?? 0) > 0 && !ctx.tls) {
    throw new Error("runtime.yaml: submission needs the `tls` section (STARTTLS before AUTH)");
  }

  const log = logger.child({ service: "smtp" });
  const domains = new LocalDomains(smtp.domains);
  // The maps first: a bad one stops the start (file:line) before the queue runner starts.
  const pipeline =
    options.pipeline ??
    createFilterPipeline(config.filter, {
      logger: logger.child({ service: "filter" }),
      localDomains: smtp.domains,
      hostname: config.host.name,
    });
  const { queue, metrics } = await openSmtpQueue(ctx, options.queue);
  const anvil = options.anvil ?? new LocalAnvil(anvilLimits(config));
  // The same stores the queue delivers to (queue/runner.ts): mailHost, else queue.lmtp.host.
  const quotaCheck = smtp.quotaCheck.enabled
    ? new QuotaCheck({
        timeoutMs: smtp.quotaCheck.timeoutMs,
        cacheSeconds: smtp.quotaCheck.cacheSeconds,
        defaultHost: queueConfig.lmtp.host,
        port: queueConfig.lmtp.port,
        name: config.host.name,
        logger: log.child({ component: "quota-check" }),
      })
    : undefined;
  const common = {
    config: smtp,
    hostname: config.host.name,
    domains,
    directory,
    queue,
    pipeline,
    logger: log,
    anvil,
    metrics,
    ...(quotaCheck ? { quotaCheck } : {}),
    ...(ctx.tls ? { tls: ctx.tls } : {}),
    ...(config.filter.dnsServers ? { dnsServers: config.filter.dnsServers } : {}),
  };
  const plan: Array<{ kind: ListenerKind; address: string }> = [];
  if (wantMx) for (const a of smtp.mx?.listen ?? []) plan.push({ kind: "mx", address: a });
  if (wantRelay) {
    for (const a of smtp.relay?.listen ?? []) plan.push({ kind: "relay", address: a });
    for (const a of smtp.relay?.submissionListen ?? []) plan.push({ kind: "submission", address: a });
  }
  const trusted = new Networks(smtp.relay?.trustedNetworks ?? []);

  const servers: Array<{ kind: ListenerKind; server: SMTPServer }> = [];
  try {
    for (const { kind, address } of plan) {
      const server = createListener({ ...common, kind, ...(kind === "relay" ? { trusted } : {}) });
      const { host, port } = parseListen(address);
      await new Promise<void>((resolve, reject) => {
        server.server.once("error", reject);
        server.listen(port, host, () => {
          server.server.removeListener("error", reject);
          resolve();
        });
      });
      servers.push({ kind, server });
    }
  } catch (err) {
    for (const { server } of servers) server.close();
    quotaCheck?.close();
    await queue.drain(0);
    throw err;
  }
  const addresses = () =>
    servers.map(({ server }) => {
      const a = server.server.address() as AddressInfo;
      return a.family === "IPv6" ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
    });
  log.info({ listeners: servers.map((s, i) => `${s.kind} ${addresses()[i]}`) }, "smtp service started");

  return {
    name: "smtp",
    addresses,
    /** Per listener kind, for tests and the bench. */
    async drain(timeoutMs: number) {
      await Promise.all(
        servers.map(
          ({ server }) =>
            new Promise<void>((resolve) => {
              const timer = setTimeout(resolve, timeoutMs);
              server.close(() => {
                clearTimeout(timer);
                resolve();
              });
            }),
        ),
      );
      quotaCheck?.close();
      await queue.drain(timeoutMs);
      if (!options.pipeline) await pipeline.close();
    },
    async healthy() {
      return servers.every(({ server }) => server.server.listening);
    },
  };
}

/**
 * `serve smtp`: one process (smtp.workers: 1), or a primary that delivers and
 * smtp.workers acceptor processes (cluster.ts; default one per CPU).
 */
export const start: StartService = (ctx) => {
  if (isSmtpWorker()) return startSmtpWorker(ctx);
  const workers = smtpWorkerCount(ctx.config);
  return workers > 1 ? startSmtpCluster(ctx, { workers }) : startSmtp(ctx);
};
