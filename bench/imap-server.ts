/**
 * Our IMAP service in its own processes for bench/imap.ts, as `serve imap`
 * runs it: with IMAP_WORKERS > 1 (default: one per CPU, imap.workers' default)
 * this process is the primary (the host's connection limits, /metrics summed)
 * and forks that many workers running this same file (imap/service.ts);
 * IMAP_WORKERS=1 is one process. The real Maildir store (fsync on) under
 * STORE_ROOT, a directory that knows users u0…uN with BENCH_PASSWORD (from the
 * environment), limits raised for the load.
 * Prints {"port": n, "pids": [...]} on stdout; answers "mem" on stdin with
 * this process's memory after a full GC (run with --expose-gc; the workers
 * collect too) and the open connections summed over the workers (from the
 * service's own mailinfra_imap_connections gauge).
 */
import cluster from "node:cluster";
import { availableParallelism } from "node:os";
import { createInterface } from "node:readline";
import { pino } from "pino";
import { Registry } from "prom-client";
import { RuntimeConfigSchema } from "../runtime/src/config/schema.js";
import type { Account, Directory } from "../runtime/src/directory/types.js";
import { isImapWorker, startImap, startImapCluster, startImapWorker } from "../runtime/src/imap/service.js";
import { createMaildirStore } from "../runtime/src/store/index.js";

const password = process.env.BENCH_PASSWORD ?? "";
const root = process.env.STORE_ROOT ?? "";
if (!password || !root) throw new Error("BENCH_PASSWORD and STORE_ROOT are required");
const workers = Number(process.env.IMAP_WORKERS ?? availableParallelism());

const account = (uid: string): Account | null =>
  /^u\d+$/.test(uid)
    ? { uid, dn: `uid=${uid},dc=bench`, mail: `${uid}@bench.example`, addresses: [`${uid}@bench.example`] }
    : null;
const directory: Directory = {
  findByAddress: async (a) => account(a.split("@")[0]!),
  findByLogin: async (l) => account(l),
  authenticate: async (l, p) => (p === password ? account(l) : null),
  close: async () => undefined,
};
const config = RuntimeConfigSchema.parse({
  host: { name: "bench", roles: ["store"] },
  log: { level: "warn" },
  store: { root, fsync: process.env.FSYNC !== "0", defaultQuotaBytes: 10 * 1024 ** 3 },
  imap: {
    listen: ["127.0.0.1:0"],
    workers,
    maxLiteralBytes: 50 * 1024 ** 2,
    authFailureDelayMs: 2000,
    limits: {
      maxLineBytes: 65_536,
      maxBadCommands: 20,
      idleTimeoutSeconds: 1800,
      maxConnectionsPerIp: 1_000_000,
      maxConnectionsPerUser: 1_000_000,
      authFailuresBeforeDelay: 3,
    },
  },
});
const store = createMaildirStore({
  root,
  fsync: config.store!.fsync,
  defaultQuotaBytes: config.store!.defaultQuotaBytes,
});
const ctx = { config, logger: pino({ level: "warn" }), metrics: new Registry(), directory, store };
const gc = (globalThis as { gc?: () => void }).gc;
const GC = "bench-imap:gc";

if (isImapWorker()) {
  await startImapWorker(ctx);
  process.on("message", (m: { type?: string }) => {
    if (m?.type === GC) {
      gc?.();
      gc?.();
    }
  });
  process.on("SIGTERM", () => process.exit(0));
} else {
  const service =
    workers > 1 ? await startImapCluster(ctx, { workers, workerArgs: () => [] }) : await startImap(ctx);
  const pids = [process.pid, ...Object.values(cluster.workers ?? {}).map((w) => w?.process.pid)];
  process.stdout.write(
    `${JSON.stringify({ port: Number(service.addresses()[0]?.split(":").pop()), pids })}\n`,
  );
  createInterface({ input: process.stdin }).on("line", (line) => {
    if (line.trim() !== "mem") return;
    for (const w of Object.values(cluster.workers ?? {})) w?.send({ type: GC });
    gc?.();
    gc?.();
    // the workers' collections are asynchronous: a moment for them
    setTimeout(() => {
      void ctx.metrics.metrics().then((text) => {
        const m = process.memoryUsage();
        const connections = Number(/^mailinfra_imap_connections (\d+)$/m.exec(text)?.[1] ?? 0);
        process.stdout.write(`${JSON.stringify({ rss: m.rss, heapUsed: m.heapUsed, connections })}\n`);
      });
    }, 500);
  });
  process.stdin.on("end", () => {
    void service.drain(1000).then(() => process.exit(0));
  });
  process.on("SIGTERM", () => {
    void service.drain(1000).then(() => process.exit(0));
  });
}
