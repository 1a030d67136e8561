/**
 * `serve smtp` on several processes (smtp.workers > 1, node:cluster):
 *   primary    the process systemd started: opens the durable queue (folders,
 *              crash leftovers) and runs the ONE delivery runner of the queue,
 *              so nothing is delivered twice; serves /metrics for all (the
 *              workers' counters summed in); restarts a dead acceptor; drains
 *              them all on SIGTERM.
 *   acceptors  smtp.workers processes, each the same program (`serve smtp`
 *              with a copy of runtime.yaml minus the metrics address), sharing
 *              the listening sockets (SCHED_NONE: the kernel hands each
 *              connection to one acceptor, no hop through the primary). Each
 *              writes and fsyncs message + envelope before its 250 (unique ids,
 *              tmp names with its pid), then tells the primary over IPC; a lost
 *              notice is caught by the runner's periodic scan.
 * An acceptor killed mid-DATA leaves at most a file in tmp/ (never renamed,
 * never acknowledged): the primary removes that process's tmp files.
 * Per-client limits (pregreet passes, AUTH throttles, the filter's client
 * rate and concurrency) are kept in the primary for all (anvil.ts).
 */
import cluster, { type Worker } from "node:cluster";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { AggregatorRegistry, type MetricObjectWithValues, type MetricValue } from "prom-client";
import { type RuntimeConfig, RuntimeConfigSchema } from "../config/schema.js";
import { openAcceptorQueue } from "../queue/index.js";
import type { QueuedEnvelope } from "../queue/types.js";
import type { RunningService, ServiceContext } from "../service.js";
import { AnvilServer, anvilLimits, LocalAnvil, RemoteAnvil } from "./anvil.js";
import { openSmtpQueue, type SmtpServiceOptions, smtpSections, startSmtp } from "./service.js";

/** Set (to the acceptor's index) in an acceptor's environment. */
export const WORKER_ENV = "MAILINFRA_SMTP_WORKER";
/** How long the primary waits for every acceptor's listeners at start. */
export const WORKER_READY_TIMEOUT_MS = 60_000;
/** An acceptor that died within this long of its start is restarted only after this long (no fork loop). */
export const WORKER_RESTART_DELAY_MS = 1_000;
/** Messages up to this size travel with the IPC notice (the runner then reads no file). */
export const INLINE_MESSAGE_BYTES = 256 * 1024;
/** How long /metrics waits for the acceptors' counters. */
export const METRICS_COLLECT_TIMEOUT_MS = 2_000;

const P = "mailinfra-smtp:";
type ToPrimary =
  | { type: `${typeof P}ready`; addresses: string[] }
  | { type: `${typeof P}queued`; envelope: QueuedEnvelope; message?: Uint8Array }
  | { type: `${typeof P}metrics`; seq: number; metrics: MetricObjectWithValues<MetricValue<string>>[] };
type ToWorker = { type: `${typeof P}drain` } | { type: `${typeof P}metrics`; seq: number };

type Config = RuntimeConfig;

/** smtp.workers, or one per CPU. */
export function smtpWorkerCount(config: Config): number {
  return config.smtp?.workers ?? availableParallelism();
}

/** True in an acceptor process forked by startSmtpCluster. */
export function isSmtpWorker(): boolean {
  return cluster.isWorker && process.env[WORKER_ENV] !== undefined;
}

/** Process metrics and the build gauge come from the primary only; counters are summed. */
function workerMetric(name: string): boolean {
  return name.startsWith("mailinfra_") && !/^mailinfra_(process_|nodejs_|build_info)/.test(name);
}

/** An acceptor's log lines that would read as the service's own (cli/serve.ts logs them per process). */
const LIFECYCLE = /"msg":"(smtp started|smtp stopped|draining)"/g;

/**
 * Copies an acceptor's output, line by line, renaming its lifecycle lines
 * ("smtp started" is the primary's, once all acceptors listen).
 */
function forward(from: Readable | null | undefined, to: NodeJS.WritableStream): void {
  if (!from) return;
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
    to.write(text.slice(0, end + 1).replace(LIFECYCLE, '"msg":"smtp acceptor: $1"'));
  });
  from.on("end", () => {
    if (rest) to.write(rest);
  });
}

export interface SmtpClusterOptions {
  workers: number;
  /**
   * The arguments of an acceptor process (the running script, process.argv[1],
   * with process.execArgv), given its config file (JSON).
   * Default: `--config <file> serve smtp` (the mailinfra CLI).
   */
  workerArgs?: (configFile: string) => string[];
}

export async function startSmtpCluster(
  ctx: ServiceContext,
  options: SmtpClusterOptions,
): Promise<RunningService> {
  const { config, logger } = ctx;
  const { queue: queueConfig } = smtpSections(ctx);
  if (!cluster.isPrimary) throw new Error("startSmtpCluster: already in a cluster worker");
  const log = logger.child({ service: "smtp", role: "primary" });
  // The SMTP metrics are registered here too: /metrics sums the acceptors' into them.
  const { queue } = await openSmtpQueue(ctx);
  const anvil = new AnvilServer(new LocalAnvil(anvilLimits(config, true)));

  // The acceptors' runtime.yaml: this one without the metrics address (served here for all).
  const dir = await mkdtemp(join(tmpdir(), "mailinfra-smtp-"));
  const configFile = join(dir, "runtime.json");
  const workerConfig = { ...config, metrics: {} };
  RuntimeConfigSchema.parse(workerConfig);
  await writeFile(configFile, JSON.stringify(workerConfig), { mode: 0o600 });

  // NODE_CLUSTER_SCHED_POLICY=rr (Node's own switch) makes the primary accept and hand out connections.
  if (!process.env.NODE_CLUSTER_SCHED_POLICY) cluster.schedulingPolicy = cluster.SCHED_NONE;
  cluster.setupPrimary({
    exec: process.argv[1] ?? "",
    args: options.workerArgs?.(configFile) ?? ["--config", configFile, "serve", "smtp"],
    execArgv: process.execArgv,
    serialization: "advanced",
    // Their output goes through here (forward()): the journal gets it, marked as the acceptors'.
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
  const pendingMetrics = new Map<number, (m: MetricObjectWithValues<MetricValue<string>>[]) => void>();
  let startup: { resolve: () => void; reject: (err: Error) => void } | undefined;

  const removeTmpOf = async (pid: number | undefined) => {
    if (!pid) return;
    const tmp = join(queueConfig.dir, "tmp");
    for (const name of await readdir(tmp).catch(() => [] as string[])) {
      // QueueStore's tmp names: <id>.<kind>.<pid>.<n>
      if (name.split(".")[2] === String(pid)) await rm(join(tmp, name), { force: true });
    }
  };

  const fork = (index: number) => {
    const worker = cluster.fork({ [WORKER_ENV]: String(index) });
    forward(worker.process.stdout, process.stdout);
    forward(worker.process.stderr, process.stderr);
    const slot: Slot = { worker, startedAt: Date.now(), ready: false };
    slots[index] = slot;
    worker.on("message", (m: ToPrimary) => {
      if (anvil.handle(worker, m)) return;
      if (m?.type === `${P}queued`) {
        const bytes = m.message
          ? Buffer.from(m.message.buffer, m.message.byteOffset, m.message.byteLength)
          : undefined;
        queue.notify(m.envelope, bytes);
      } else if (m?.type === `${P}ready`) {
        slot.ready = true;
        if (addresses.length === 0) addresses = m.addresses;
        if (startup && slots.every((s) => s?.ready)) startup.resolve();
      } else if (m?.type === `${P}metrics`) {
        pendingMetrics.get(m.seq)?.(m.metrics);
      }
    });
    worker.on("exit", (code, signal) => {
      const pid = worker.process.pid;
      anvil.release(worker);
      void removeTmpOf(pid).catch((err: unknown) =>
        log.error({ err, pid }, "removing a dead acceptor's tmp files"),
      );
      if (stopping) return;
      if (!slot.ready && startup) {
        startup.reject(new Error(`smtp acceptor ${index} exited (${signal ?? code}) before listening`));
        return;
      }
      log.error({ pid, code, signal, acceptor: index }, "smtp acceptor died: starting another");
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

  /** Stops every acceptor (drain, then SIGKILL at the deadline). */
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
  };

  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`smtp acceptors not listening after ${WORKER_READY_TIMEOUT_MS} ms`)),
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
    await queue.drain(0);
    await rm(dir, { recursive: true, force: true });
    throw err;
  }

  // /metrics: this process's registry plus the acceptors' counters, summed by labels.
  const registry = ctx.metrics;
  const own = registry.getMetricsAsJSON.bind(registry);
  const collect = async (): Promise<MetricObjectWithValues<MetricValue<string>>[][]> => {
    const asks = live().map(
      (s) =>
        new Promise<MetricObjectWithValues<MetricValue<string>>[]>((resolve) => {
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
    );
    return Promise.all(asks);
  };
  registry.metrics = async () => {
    const mine = await own();
    // The metrics only this process has, as its registry prints them (AggregatorRegistry
    // would drop the `omit` ones, e.g. process_start_time_seconds) ...
    const parts = await Promise.all(
      mine.filter((m) => !workerMetric(m.name)).map((m) => registry.getSingleMetricAsString(m.name)),
    );
    // ... then the counters the acceptors have too, summed by labels.
    const shared = mine.filter((m) => workerMetric(m.name));
    const summed = await AggregatorRegistry.aggregate([shared, ...(await collect())]).metrics();
    return `${parts.join("\n")}\n${summed}`;
  };

  log.info(
    { acceptors: options.workers, pids: live().map((s) => s.worker.process.pid), addresses },
    "smtp acceptors started",
  );
  return {
    name: "smtp",
    addresses: () => addresses,
    async drain(timeoutMs: number) {
      const started = Date.now();
      await stopWorkers(timeoutMs);
      await queue.drain(Math.max(0, timeoutMs - (Date.now() - started)));
      await rm(dir, { recursive: true, force: true });
    },
    async healthy() {
      return live().length > 0;
    },
  };
}

/**
 * An acceptor: the SMTP listeners over an acceptor queue. Answers the
 * primary's drain (as a SIGTERM to itself, which its runner — `serve` —
 * turns into drain()) and metrics requests.
 */
export async function startSmtpWorker(
  ctx: ServiceContext,
  options: Omit<SmtpServiceOptions, "queue"> = {},
): Promise<RunningService> {
  if (!ctx.config.queue) throw new Error("runtime.yaml: `queue` section missing for the smtp service");
  const tell = (m: ToPrimary) => {
    if (process.connected) process.send?.(m, undefined, {}, () => undefined);
  };
  const queue = openAcceptorQueue({
    dir: ctx.config.queue.dir,
    onQueued: (envelope, message) =>
      tell({
        type: `${P}queued`,
        envelope,
        ...(message.length <= INLINE_MESSAGE_BYTES ? { message } : {}),
      }),
  });
  const running = await startSmtp(ctx, {
    ...options,
    queue,
    anvil: new RemoteAnvil(anvilLimits(ctx.config)),
  });
  let signalled = false;
  process.once("SIGTERM", () => {
    signalled = true;
  });
  process.on("message", (m: ToWorker) => {
    if (m?.type === `${P}drain` && !signalled) {
      signalled = true;
      process.kill(process.pid, "SIGTERM");
    } else if (m?.type === `${P}metrics`) {
      void ctx.metrics
        .getMetricsAsJSON()
        .then((all) =>
          tell({ type: `${P}metrics`, seq: m.seq, metrics: all.filter((x) => workerMetric(x.name)) }),
        );
    }
  });
  tell({ type: `${P}ready`, addresses: running.addresses() });
  return running;
}
