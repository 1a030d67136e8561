/**
 * `mailinfra serve <service> [--config FILE]`, the process systemd runs:
 * config → logger → metrics registry → context (TLS, directory, store) →
 * metrics/health HTTP (`metrics.services.<name>`, else `metrics.listen`) →
 * the service's start(). SIGTERM or SIGINT drains the service
 * (host.drainTimeoutSeconds), then exits 0; a second signal exits at once.
 * Any startup failure is logged (fatal, with the reason) and exits 1.
 */
import pino from "pino";
import { Gauge } from "prom-client";
import { ConfigError } from "../config/load.js";
import { createLogger } from "../log/index.js";
import { createMetricsRegistry, type MetricsServer, startMetricsServer } from "../metrics/index.js";
import { type RunningService, SERVICE_NAMES, type ServiceContext, type ServiceName } from "../service.js";
import type { CommandContext } from "./commands.js";
import { buildServiceContext, closeServiceContext } from "./context.js";
import { SERVICES } from "./services.js";
import { COMMIT, VERSION } from "./version.js";

/** After the drain deadline, this much longer for drain() to return before exiting anyway. */
export const DRAIN_GRACE_MS = 2_000;

function isServiceName(name: string): name is ServiceName {
  return (SERVICE_NAMES as readonly string[]).includes(name);
}

export async function runServe(cmd: CommandContext): Promise<number> {
  const [name, ...extra] = cmd.args;
  if (!name || extra.length > 0) {
    cmd.io.err("usage: mailinfra serve <service> [--config FILE]");
    return 2;
  }
  if (!isServiceName(name)) {
    cmd.io.err(`unknown service ${JSON.stringify(name)}; services: ${SERVICE_NAMES.join(", ")}`);
    return 2;
  }
  const entry = SERVICES[name];
  if (!entry) {
    cmd.io.err(`service ${name} is not part of this build`);
    return 1;
  }

  // Before the logger exists, problems go to stderr (the journal keeps both).
  let config: Awaited<ReturnType<CommandContext["loadConfig"]>>;
  try {
    config = await cmd.loadConfig();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    for (const p of err.problems) cmd.io.err(`${err.source}: ${p}`);
    return 1;
  }
  const missing = entry.needs.filter((section) => config[section] === undefined);
  if (missing.length > 0) {
    cmd.io.err(`${cmd.configPath}: service ${name} needs section(s): ${missing.join(", ")}`);
    return 1;
  }

  const destination = pino.destination({ dest: 1, sync: false });
  const logger = createLogger({
    level: config.log.level,
    base: { service: name, host: config.host.name },
    destination,
  });
  const flush = () => {
    try {
      destination.flushSync();
    } catch {
      // stdout gone: nothing to do
    }
  };
  const die = (err: unknown, msg: string): never => {
    logger.fatal({ err }, msg);
    flush();
    process.exit(1);
  };
  process.on("uncaughtException", (err) => die(err, "uncaught exception"));
  process.on("unhandledRejection", (err) => die(err, "unhandled promise rejection"));

  const metrics = createMetricsRegistry({ service: name, host: config.host.name });
  new Gauge({
    name: "mailinfra_build_info",
    help: "The running build; always 1",
    labelNames: ["version", "commit", "node"] as const,
    registers: [metrics],
  }).set({ version: VERSION, commit: COMMIT, node: process.version }, 1);

  let ctx: ServiceContext | undefined;
  let running: RunningService | undefined;
  let metricsServer: MetricsServer | undefined;
  const cleanup = async () => {
    await metricsServer?.close().catch(() => {});
    if (ctx) await closeServiceContext(ctx);
  };

  // Signals are taken from the start: one during startup stops the service as soon as it is up.
  let stopRequested: NodeJS.Signals | undefined;
  let requestStop: (signal: NodeJS.Signals) => void = () => {};
  const stopSignal = new Promise<NodeJS.Signals>((r) => {
    requestStop = r;
  });
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopRequested) {
      logger.warn({ signal }, "second signal: exiting without waiting for the drain");
      flush();
      process.exit(1);
    }
    stopRequested = signal;
    requestStop(signal);
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);

  try {
    ctx = await buildServiceContext(config, logger, metrics);
    // One runtime.yaml may serve several services on a host: each needs its own metrics address.
    const metricsListen = config.metrics.services?.[name] ?? config.metrics.listen;
    if (metricsListen) {
      metricsServer = await startMetricsServer({
        listen: metricsListen,
        registry: metrics,
        healthy: async () => (running ? running.healthy() : false),
        logger,
      });
    }
    const start = await entry.load();
    running = await start(ctx);
  } catch (err) {
    logger.fatal({ err }, `startup failed: ${(err as Error).message ?? String(err)}`);
    await cleanup();
    flush();
    return 1;
  }
  logger.info(
    { addresses: running.addresses(), metrics: metricsServer?.address, version: VERSION },
    `${name} started`,
  );

  const signal = await stopSignal;
  const timeoutMs = config.host.drainTimeoutSeconds * 1000;
  logger.info({ signal, timeoutMs }, "draining");
  const t0 = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const finished = await Promise.race([
    running.drain(timeoutMs).then(
      () => true,
      (err: unknown) => {
        logger.error({ err }, "drain failed");
        return true;
      },
    ),
    new Promise<false>((r) => {
      timer = setTimeout(() => r(false), timeoutMs + DRAIN_GRACE_MS);
    }),
  ]);
  clearTimeout(timer);
  if (!finished) logger.warn({ timeoutMs }, "drain overran its deadline: exiting anyway");
  await cleanup();
  logger.info({ ms: Date.now() - t0 }, `${name} stopped`);
  flush();
  return 0;
}
