/**
 * A service on several processes (cluster/workers.ts) under test, both ends:
 *   runClusterFixture   in the fixture file (serve-imap-cluster.ts here,
 *                       queue/fixtures/serve-cluster.ts for SMTP): a worker
 *                       starts its listeners; the primary starts the workers,
 *                       prints `READY {"addresses":[…],"pids":[…]}`, and
 *                       "METRICS <json text>" (the summed /metrics) on SIGUSR2.
 *                       SIGTERM drains either and exits 0.
 *   startClusterProcess in the test: runs a fixture on a config file and
 *                       waits for its READY line.
 */
import { type ChildProcess, spawn } from "node:child_process";
import cluster from "node:cluster";
import type { Registry } from "prom-client";
import type { RunningService } from "../../src/service.js";

export async function runClusterFixture(options: {
  isWorker: boolean;
  metrics: Registry;
  startWorker: () => Promise<RunningService>;
  startPrimary: () => Promise<RunningService>;
}): Promise<void> {
  const service = await (options.isWorker ? options.startWorker() : options.startPrimary());
  process.on("SIGTERM", () => {
    void service.drain(2000).then(() => process.exit(0));
  });
  if (options.isWorker) return;
  const pids = Object.values(cluster.workers ?? {}).map((w) => w?.process.pid);
  process.stdout.write(`READY ${JSON.stringify({ addresses: service.addresses(), pids })}\n`);
  process.on("SIGUSR2", () => {
    void options.metrics.metrics().then((m) => process.stdout.write(`METRICS ${JSON.stringify(m)}\n`));
  });
}

export interface ClusterProcess {
  child: ChildProcess;
  addresses: string[];
  pids: number[];
  out: () => string;
}

async function until(what: string, check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Runs `fixture` (a .ts file, through tsx) on `configFile`; resolves once its primary printed READY. */
export async function startClusterProcess(
  fixture: string,
  configFile: string,
  env: NodeJS.ProcessEnv,
  children: Set<ChildProcess>,
): Promise<ClusterProcess> {
  const child = spawn(process.execPath, ["--import", "tsx", fixture, configFile], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...env },
  });
  children.add(child);
  let out = "";
  let err = "";
  child.stdout?.on("data", (d: Buffer) => {
    out += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    err += d.toString();
  });
  await until(
    "READY",
    () => {
      if (child.exitCode !== null) throw new Error(`serve exited ${child.exitCode}: ${err}`);
      return out.includes("\n");
    },
    60_000,
  );
  const ready = JSON.parse(out.slice(out.indexOf(" ") + 1, out.indexOf("\n"))) as {
    addresses: string[];
    pids: number[];
  };
  return { child, addresses: ready.addresses, pids: ready.pids, out: () => out };
}
