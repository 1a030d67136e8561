// Our MX + queue in its own process(es) for bench/smtp.ts (so the load
// generator does not share its event loop). argv[2] is a runtime config (JSON)
// whose `ldap` section names the bench's slapd. No content checks (accept-all
// pipeline): the comparison is with Postfix without content checks.
// smtp.workers > 1 (default: one per CPU): this process is the primary (queue
// runner) and forks that many acceptors running this same file, as
// `serve smtp` does (runtime/src/smtp/cluster.ts).
// Prints "port <n>" once listening (the primary, or the single process).
import { readFile } from "node:fs/promises";
import pino from "pino";
import { Registry } from "prom-client";
import { RuntimeConfigSchema } from "../runtime/src/config/schema.js";
import { createDirectory } from "../runtime/src/directory/index.js";
import { acceptAllPipeline } from "../runtime/src/smtp/accept-all-filter.js";
import {
  isSmtpWorker,
  smtpWorkerCount,
  startSmtpCluster,
  startSmtpWorker,
} from "../runtime/src/smtp/cluster.js";
import { startSmtp } from "../runtime/src/smtp/service.js";

const config = RuntimeConfigSchema.parse(JSON.parse(await readFile(process.argv[2] ?? "", "utf8")));
if (!config.ldap) throw new Error("bench config without ldap");
const directory = createDirectory(config.ldap);
const ctx = {
  config,
  logger: pino({ level: process.env.BENCH_LOG ?? "warn" }, pino.destination(2)),
  metrics: new Registry(),
  directory,
};
const workers = smtpWorkerCount(config);
const service = isSmtpWorker()
  ? await startSmtpWorker(ctx, { pipeline: acceptAllPipeline() })
  : workers > 1
    ? await startSmtpCluster(ctx, { workers, workerArgs: (file) => [file] })
    : await startSmtp(ctx, { pipeline: acceptAllPipeline() });
if (!isSmtpWorker()) process.stdout.write(`port ${service.addresses()[0]?.split(":").pop()}\n`);
process.on("SIGTERM", () => {
  void service.drain(1000).then(() => process.exit(0));
});
