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
 * rate and concurrency) and smtp.maxConnections are kept in the primary for
 * all (anvil.ts). The process plumbing (fork, restart, drain, /metrics) is
 * cluster/workers.ts, shared with `serve imap`.
 */
import { readdir, rm } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { isPoolWorker, joinPool, startWorkerPool, tellPrimary, workerEnv } from "../cluster/workers.js";
import type { RuntimeConfig } from "../config/schema.js";
import { openAcceptorQueue } from "../queue/index.js";
import type { QueuedEnvelope } from "../queue/types.js";
import type { RunningService, ServiceContext } from "../service.js";
import { anvilLimits, anvilServer, LocalAnvil, RemoteAnvil } from "./anvil.js";
import { openSmtpQueue, type SmtpServiceOptions, smtpSections, startSmtp } from "./service.js";

export {
  METRICS_COLLECT_TIMEOUT_MS,
  WORKER_READY_TIMEOUT_MS,
  WORKER_RESTART_DELAY_MS,
} from "../cluster/workers.js";

/** Set (to the acceptor's index) in an acceptor's environment. */
export const WORKER_ENV = workerEnv("smtp");
/** Messages up to this size travel with the IPC notice (the runner then reads no file). */
export const INLINE_MESSAGE_BYTES = 256 * 1024;

const QUEUED = "mailinfra-smtp:queued";
interface Queued {
  type: typeof QUEUED;
  envelope: QueuedEnvelope;
  message?: Uint8Array;
}

/** smtp.workers, or one per CPU. */
export function smtpWorkerCount(config: RuntimeConfig): number {
  return config.smtp?.workers ?? availableParallelism();
}

/** True in an acceptor process forked by startSmtpCluster. */
export function isSmtpWorker(): boolean {
  return isPoolWorker("smtp");
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
  const log = logger.child({ service: "smtp", role: "primary" });
  // The SMTP metrics are registered here too: /metrics sums the acceptors' into them.
  const { queue } = await openSmtpQueue(ctx);

  const removeTmpOf = async (pid: number | undefined) => {
    if (!pid) return;
    const tmp = join(queueConfig.dir, "tmp");
    for (const name of await readdir(tmp).catch(() => [] as string[])) {
      // QueueStore's tmp names: <id>.<kind>.<pid>.<n>
      if (name.split(".")[2] === String(pid)) await rm(join(tmp, name), { force: true });
    }
  };

  let pool: Awaited<ReturnType<typeof startWorkerPool>>;
  try {
    pool = await startWorkerPool(ctx, {
      service: "smtp",
      role: "acceptor",
      workers: options.workers,
      workerArgs: options.workerArgs,
      anvil: anvilServer(new LocalAnvil(anvilLimits(config, true))),
      onMessage: (_worker, m) => {
        const q = m as Queued | undefined;
        if (q?.type !== QUEUED) return;
        const bytes = q.message
          ? Buffer.from(q.message.buffer, q.message.byteOffset, q.message.byteLength)
          : undefined;
        queue.notify(q.envelope, bytes);
      },
      onExit: (worker) => {
        const pid = worker.process.pid;
        void removeTmpOf(pid).catch((err: unknown) =>
          log.error({ err, pid }, "removing a dead acceptor's tmp files"),
        );
      },
    });
  } catch (err) {
    await queue.drain(0);
    throw err;
  }

  return {
    name: "smtp",
    addresses: () => pool.addresses(),
    async drain(timeoutMs: number) {
      const started = Date.now();
      await pool.stop(timeoutMs);
      await queue.drain(Math.max(0, timeoutMs - (Date.now() - started)));
    },
    async healthy() {
      return pool.healthy();
    },
  };
}

/**
 * An acceptor: the SMTP listeners over an acceptor queue, the primary's
 * anvil; answers the primary's drain and metrics requests (cluster/workers.ts).
 */
export async function startSmtpWorker(
  ctx: ServiceContext,
  options: Omit<SmtpServiceOptions, "queue"> = {},
): Promise<RunningService> {
  if (!ctx.config.queue) throw new Error("runtime.yaml: `queue` section missing for the smtp service");
  const queue = openAcceptorQueue({
    dir: ctx.config.queue.dir,
    onQueued: (envelope, message) =>
      tellPrimary({
        type: QUEUED,
        envelope,
        ...(message.length <= INLINE_MESSAGE_BYTES ? { message } : {}),
      } satisfies Queued),
  });
  const running = await startSmtp(ctx, {
    ...options,
    queue,
    anvil: new RemoteAnvil(anvilLimits(ctx.config)),
  });
  joinPool(ctx, running);
  return running;
}
