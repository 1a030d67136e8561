/**
 * A service on several processes (node:cluster), shared by `serve smtp`
 * (smtp.workers, smtp/cluster.ts) and `serve imap` (imap.workers,
 * imap/service.ts):
 *   primary   the process systemd started: forks the workers, restarts a
 *             dead one, drains them all on SIGTERM, serves /metrics for all
 *             (their counters summed into its own registry) and /healthz,
 *             and keeps the host-wide limits (anvil.ts).
 *   workers   the same program (`serve <service>` with a copy of runtime.yaml
 *             minus the metrics address), sharing the listening sockets.
 *             SCHED_NONE: the kernel hands each connection to one worker, no
 *             hop through the primary (NODE_CLUSTER_SCHED_POLICY=rr, Node's
 *             own switch, makes the primary accept and deal them out).
 * The service's own messages (SMTP's "queued" notices) travel beside the
 * pool's (onMessage / tellPrimary).
 */
import cluster, { type Worker } from "node:cluster";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { AggregatorRegistry, type MetricObjectWithValues, type MetricValue } from "prom-client";
import { RuntimeConfigSchema } from "../config/schema.js";
import type { RunningService, ServiceContext } from "../service.js";
import type { AnvilServer } from "./anvil.js";

/** How long the primary waits for every worker's listeners at start. */
export const WORKER_READY_TIMEOUT_MS = 60_000;
/** A worker that died within this long of its start is restarted only after this long (no fork loop). */
export const WORKER_RESTART_DELAY_MS = 1_000;
/** How long /metrics waits for the workers' counters. */
export const METRICS_COLLECT_TIMEOUT_MS = 2_000;

export type PoolService = "smtp" | "imap";
type Metrics = MetricObjectWithValues<MetricValue<string>>[];

const P = "mailinfra-pool:";
type ToPrimary =
  | { type: `${typeof P}ready`; addresses: string[] }
  | { type: `${typeof P}metrics`; seq: number; metrics: Metrics };
type ToWorker = { type: `${typeof P}drain` } | { type: `${typeof P}metrics`; seq: number };

/** Set (to the worker's index) in a worker's environment: MAILINFRA_SMTP_WORKER, MAILINFRA_IMAP_WORKER. */
export function workerEnv(service: PoolService): string {
  return `MAILINFRA_${service.toUpperCase()}_WORKER`;
}

/** True in a worker process forked by startWorkerPool for `service`. */
export function isPoolWorker(service: PoolService): boolean {
  return cluster.isWorker && process.env[workerEnv(service)] !== undefined;
}

/** Process metrics and the build gauge come from the primary only; the rest is summed. */
export function workerMetric(name: string): boolean {
  return name.startsWith("mailinfra_") && !/^mailinfra_(process_|nodejs_|build_info)/.test(name);
}

/**
 * Copies a worker's output line by line, renaming its lifecycle lines: cli/serve.ts
 * logs "<service> started" per process, and the journal must read it once, from the primary.
 */
function forward(
  from: Readable | null | undefined,
  to: NodeJS.WritableStream,
  service: string,
  role: string,
): void {
  if (!from) return;
  const lifecycle = new RegExp(`"msg":"(${service} started|${service} stopped|draining)"`, "g");
  let rest = "";
  from.setEncoding("utf8");
  from.on("data", (chunk: string) => {
    const text = rest + chunk;
    const end = text.lastIndexOf("\n");
    if (end < 0) {
      rest = text;
      return;
    }
    rest = text.slice(end + 1);
    to.write(text.slice(0, end + 1).replace(lifecycle, `"msg":"${service} ${role}: $1"`));
  });
  from.on("end", () => {
    if (rest) to.write(rest);
  });
}

export interface PoolOptions {
  service: PoolService;
  /** What the logs call a worker ("acceptor" for SMTP). */
  role: string;
  workers: number;
  /**
   * The arguments of a worker process (the running script, process.argv[1],
   * with process.execArgv), given its config file (JSON).
   * Default: `--config <file> serve <service>` (the mailinfra CLI).
   */
  workerArgs?: ((configFile: string) => string[]) | undefined;
  /** The host-wide limits the workers ask over IPC. */
  anvil?: AnvilServer;
  /** A message from a worker that is not the pool's or the anvil's. */
  onMessage?: (worker: Worker, message: unknown) => void;
  /** A worker exited (its anvil slots are already freed). */
  onExit?: (worker: Worker) => void;
}

export interface WorkerPool {
  /** The workers' listening addresses (the first worker's report). */
  addresses(): string[];
  pids(): number[];
  /** At least one worker alive. */
  healthy(): boolean;
  /** Drains every worker (SIGKILL at the deadline) and removes their config file. */
  stop(timeoutMs: number): Promise<void>;
}

/**
 * Forks options.workers workers and resolves once each listens; ctx.metrics
 * then serves their counters summed. Rejects (workers stopped) when one exits
 * before listening or they are not up within WORKER_READY_TIMEOUT_MS.
 */
export async function startWorkerPool(ctx: ServiceContext, options: PoolOptions): Promise<WorkerPool> {
  const { config, logger } = ctx;
  const { service, role } = options;
  if (!cluster.isPrimary) throw new Error(`${service}: already in a cluster worker`);
  const log = logger.child({ service, role: "primary" });

  // The workers' runtime.yaml: this one without the metrics address (served here for all).
  const dir = await mkdtemp(join(tmpdir(), `mailinfra-${service}-`));
  const configFile = join(dir, "runtime.json");
  const workerConfig = { ...config, metrics: {} };
  RuntimeConfigSchema.parse(workerConfig);
  await writeFile(configFile, JSON.stringify(workerConfig), { mode: 0o600 });

  if (!process.env.NODE_CLUSTER_SCHED_POLICY) cluster.schedulingPolicy = cluster.SCHED_NONE;
  cluster.setupPrimary({
    exec: process.argv[1] ?? "",
    args: options.workerArgs?.(configFile) ?? ["--config", configFile, "serve", service],
    execArgv: process.execArgv,
    serialization: "advanced",
    // Their output goes through here (forward()): the journal gets it, marked as the workers'.
    silent: true,
  });

  interface Slot {
    worker: Worker;
    startedAt: number;
    ready: boolean;
  }
  const slots: Array<Slot | undefined> = [];
  let stopping = false;
  let addresses: string[] = [];
  let seq = 0;
  const pendingMetrics = new Map<number, (m: Metrics) => void>();
  let startup: { resolve: () => void; reject: (err: Error) => void } | undefined;

  const fork = (index: number) => {
    const worker = cluster.fork({ [workerEnv(service)]: String(index) });
    forward(worker.process.stdout, process.stdout, service, role);
    forward(worker.process.stderr, process.stderr, service, role);
    const slot: Slot = { worker, startedAt: Date.now(), ready: false };
    slots[index] = slot;
    worker.on("message", (m: ToPrimary | { type?: unknown }) => {
      if (options.anvil?.handle(worker, m)) return;
      if (m?.type === `${P}ready`) {
        slot.ready = true;
        if (addresses.length === 0) addresses = (m as { addresses: string[] }).addresses;
        if (startup && slots.every((s) => s?.ready)) startup.resolve();
      } else if (m?.type === `${P}metrics`) {
        const r = m as { seq: number; metrics: Metrics };
        pendingMetrics.get(r.seq)?.(r.metrics);
      } else options.onMessage?.(worker, m);
    });
    worker.on("exit", (code, signal) => {
      options.anvil?.release(worker);
      options.onExit?.(worker);
      if (stopping) return;
      if (!slot.ready && startup) {
        startup.reject(new Error(`${service} ${role} ${index} exited (${signal ?? code}) before listening`));
        return;
      }
      const pid = worker.process.pid;
      log.error({ pid, code, signal, [role]: index }, `${service} ${role} died: starting another`);
      const soon = Date.now() - slot.startedAt < WORKER_RESTART_DELAY_MS;
      setTimeout(
        () => {
          if (!stopping) fork(index);
        },
        soon ? WORKER_RESTART_DELAY_MS : 0,
      ).unref();
    });
  };

  const live = () => slots.filter((s): s is Slot => s !== undefined && !s.worker.isDead());
  const send = (w: Worker, m: ToWorker) => {
    if (w.isConnected()) w.send(m, (err: Error | null) => err && undefined);
  };

  /** Stops every worker (drain, then SIGKILL at the deadline). */
  const stopWorkers = async (timeoutMs: number) => {
    stopping = true;
    const exits = live().map((s) => new Promise<void>((r) => s.worker.once("exit", () => r())));
    for (const s of live()) send(s.worker, { type: `${P}drain` });
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(exits), new Promise<void>((r) => (timer = setTimeout(r, timeoutMs)))]);
    clearTimeout(timer);
    const left = live().map((s) => new Promise<void>((r) => s.worker.once("exit", () => r())));
    for (const s of live()) s.worker.process.kill("SIGKILL");
    await Promise.all(left);
    await rm(dir, { recursive: true, force: true });
  };

  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${service} ${role}s not listening after ${WORKER_READY_TIMEOUT_MS} ms`)),
        WORKER_READY_TIMEOUT_MS,
      );
      startup = {
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      };
      for (let i = 0; i < options.workers; i++) fork(i);
    });
    startup = undefined;
  } catch (err) {
    await stopWorkers(1000);
    throw err;
  }

  // /metrics: this process's registry plus the workers' counters, summed by labels.
  const registry = ctx.metrics;
  const own = registry.getMetricsAsJSON.bind(registry);
  const collect = (): Promise<Metrics[]> =>
    Promise.all(
      live().map(
        (s) =>
          new Promise<Metrics>((resolve) => {
            seq += 1;
            const id = seq;
            const timer = setTimeout(() => {
              pendingMetrics.delete(id);
              resolve([]);
            }, METRICS_COLLECT_TIMEOUT_MS);
            pendingMetrics.set(id, (m) => {
              clearTimeout(timer);
              pendingMetrics.delete(id);
              resolve(m);
            });
            send(s.worker, { type: `${P}metrics`, seq: id });
          }),
      ),
    );
  registry.metrics = async () => {
    const mine = await own();
    // The metrics only this process has, as its registry prints them (AggregatorRegistry
    // would drop the `omit` ones, e.g. process_start_time_seconds) ...
    const parts = await Promise.all(
      mine.filter((m) => !workerMetric(m.name)).map((m) => registry.getSingleMetricAsString(m.name)),
    );
    // ... then the counters the workers have too, summed by labels.
    const shared = mine.filter((m) => workerMetric(m.name));
    const summed = await AggregatorRegistry.aggregate([shared, ...(await collect())]).metrics();
    return `${parts.join("\n")}\n${summed}`;
  };

  const pids = () => live().flatMap((s) => (s.worker.process.pid ? [s.worker.process.pid] : []));
  log.info({ [`${role}s`]: options.workers, pids: pids(), addresses }, `${service} ${role}s started`);
  return {
    addresses: () => addresses,
    pids,
    healthy: () => live().length > 0,
    stop: stopWorkers,
  };
}

/** Sends a service message to the primary (dropped when the channel is gone). */
export function tellPrimary(message: unknown): void {
  if (process.connected) process.send?.(message, undefined, {}, () => undefined);
}

/**
 * A worker's side of the pool: reports its listeners, answers the primary's
 * metrics requests, and turns its drain request into a SIGTERM to itself
 * (which its runner, `serve`, turns into running.drain()).
 */
export function joinPool(ctx: ServiceContext, running: RunningService): void {
  let signalled = false;
  process.once("SIGTERM", () => {
    signalled = true;
  });
  process.on("message", (m: ToWorker) => {
    if (m?.type === `${P}drain` && !signalled) {
      signalled = true;
      process.kill(process.pid, "SIGTERM");
    } else if (m?.type === `${P}metrics`) {
      void ctx.metrics.getMetricsAsJSON().then((all) =>
        tellPrimary({
          type: `${P}metrics`,
          seq: m.seq,
          metrics: all.filter((x) => workerMetric(x.name)),
        } satisfies ToPrimary),
      );
    }
  });
  tellPrimary({ type: `${P}ready`, addresses: running.addresses() } satisfies ToPrimary);
}
