// Our MX + queue in its own process for bench/smtp.ts (so the load generator
// does not share its event loop). argv[2] is a runtime config (JSON) whose
// `ldap` section names the bench's slapd. No content checks (accept-all
// pipeline): the comparison is with Postfix without content checks.
// Prints "port <n>" once listening.
import { readFile } from "node:fs/promises";
import pino from "pino";
import { Registry } from "prom-client";
import { RuntimeConfigSchema } from "../runtime/src/config/schema.js";
import { createDirectory } from "../runtime/src/directory/index.js";
import { acceptAllPipeline } from "../runtime/src/smtp/accept-all-filter.js";
import { startSmtp } from "../runtime/src/smtp/service.js";

const config = RuntimeConfigSchema.parse(JSON.parse(await readFile(process.argv[2] ?? "", "utf8")));
if (!config.ldap) throw new Error("bench config without ldap");
const directory = createDirectory(config.ldap);
const service = await startSmtp(
  {
    config,
    logger: pino({ level: process.env.BENCH_LOG ?? "warn" }, pino.destination(2)),
    metrics: new Registry(),
    directory,
  },
  { pipeline: acceptAllPipeline() },
);
process.stdout.write(`port ${service.addresses()[0]?.split(":").pop()}\n`);
process.on("SIGTERM", () => {
  void service.drain(1000).then(() => process.exit(0));
});
