/**
 * `mailinfra serve lmtp`: final delivery on the store host. Needs the `lmtp`,
 * `store` and `ldap` sections.
 */
import { stat } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import type { SMTPServer } from "smtp-server";
import { parseListenAddress } from "../config/load.js";
import { logServerError } from "../log/index.js";
import type { RunningService, ServiceContext, StartService } from "../service.js";
import type { Redirector } from "./deliver.js";
import { createLmtpServer } from "./server.js";
import type { DeliveryHook } from "./sieve-hook.js";

export interface LmtpServiceOptions {
  /** The Sieve interpreter, once it exists; defaults to keep-in-INBOX. */
  hook?: DeliveryHook;
  redirect?: Redirector;
}

export async function startLmtp(
  ctx: ServiceContext,
  options: LmtpServiceOptions = {},
): Promise<RunningService> {
  const { config } = ctx;
  if (!config.lmtp) throw new Error("runtime.yaml: `lmtp` section missing for the lmtp service");
  if (!ctx.store || !config.store)
    throw new Error("runtime.yaml: `store` section missing for the lmtp service");
  if (!ctx.directory)
    throw new Error("runtime.yaml: `ldap` section missing: recipients are checked in the directory");
  const storeRoot = config.store.root;
  const logger = ctx.logger.child({ service: "lmtp" });
  const servers: SMTPServer[] = [];
  const bound: string[] = [];
  for (const address of config.lmtp.listen) {
    const server = createLmtpServer({
      hostname: config.host.name,
      directory: ctx.directory,
      store: ctx.store,
      logger,
      maxMessageBytes: config.lmtp.maxMessageBytes,
      ...(config.smtp ? { hopCountLimit: config.smtp.hopCountLimit } : {}),
      // one set of counters per process, however many listeners
      ...(servers.length === 0 ? { metrics: ctx.metrics } : {}),
      ...(options.hook ? { hook: options.hook } : {}),
      ...(options.redirect ? { redirect: options.redirect } : {}),
    });
    const { host = "0.0.0.0", port } = parseListenAddress(address);
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    server.on("error", (err) => logServerError(logger, err, "lmtp server error"));
    const info = server.server.address() as AddressInfo;
    bound.push(info.family === "IPv6" ? `[${info.address}]:${info.port}` : `${info.address}:${info.port}`);
    servers.push(server);
  }
  logger.info({ addresses: bound }, "lmtp listening");
  if (!process.env.UV_THREADPOOL_SIZE) {
    // Every delivery waits on fsyncs, which run on libuv's pool (4 threads by default).
    logger.warn(
      "UV_THREADPOOL_SIZE is not set: at most 4 fsyncs run at once; set it (e.g. 64) for throughput",
    );
  }
  return {
    name: "lmtp",
    addresses: () => [...bound],
    async drain(timeoutMs: number) {
      await Promise.all(
        servers.map(
          (server) =>
            new Promise<void>((resolve) => {
              server.options.closeTimeout = timeoutMs;
              server.close(() => resolve());
            }),
        ),
      );
    },
    async healthy() {
      try {
        return (await stat(storeRoot)).isDirectory();
      } catch {
        return false;
      }
    },
  };
}

export const start: StartService = (ctx) => startLmtp(ctx);
