/**
 * Builds a ServiceContext from the parsed runtime.yaml: logger, metrics,
 * directory, store, TLS material. Each failure names the key or file at fault.
 */
import { readFile, stat } from "node:fs/promises";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import type { RuntimeConfig } from "../config/schema.js";
import { createDirectory } from "../directory/index.js";
import type { ServiceContext, TlsMaterial } from "../service.js";
import { createMaildirStore } from "../store/index.js";

export class StartupError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "StartupError";
  }
}

async function readPem(key: string, file: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (err) {
    throw new StartupError(
      `${key} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
}

export async function loadTls(config: RuntimeConfig): Promise<TlsMaterial | undefined> {
  if (!config.tls) return undefined;
  const cert = await readPem("tls.certFile", config.tls.certFile);
  const key = await readPem("tls.keyFile", config.tls.keyFile);
  return { cert, key };
}

export async function buildServiceContext(
  config: RuntimeConfig,
  logger: Logger,
  metrics: Registry,
): Promise<ServiceContext> {
  const ctx: ServiceContext = { config, logger, metrics };
  const tls = await loadTls(config);
  if (tls) ctx.tls = tls;
  if (config.ldap) {
    try {
      ctx.directory = createDirectory(config.ldap, { logger, metrics });
    } catch (err) {
      throw new StartupError(`ldap: ${(err as Error).message}`, { cause: err });
    }
  }
  if (config.store) {
    // A missing root is not fatal here: on the store pair Heartbeat mounts the
    // SAN before it starts the services, and healthy() reports a missing mount.
    const root = await stat(config.store.root).catch(() => null);
    if (!root?.isDirectory()) logger.warn({ root: config.store.root }, "store.root is not a directory (yet)");
    ctx.store = createMaildirStore({
      root: config.store.root,
      fsync: config.store.fsync,
      defaultQuotaBytes: config.store.defaultQuotaBytes,
    });
  }
  return ctx;
}

/** Release what buildServiceContext opened (after the service has drained). */
export async function closeServiceContext(ctx: ServiceContext): Promise<void> {
  await ctx.store?.close().catch(() => {});
  await ctx.directory?.close().catch(() => {});
}
