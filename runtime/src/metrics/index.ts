/**
 * Prometheus metrics and the health check, on `metrics.listen`:
 *   GET /metrics  → the registry in the text exposition format
 *   GET /healthz  → 200 "ok" when the service says it is healthy, else 503
 * Everything else is 404; only GET and HEAD are served.
 */
import { once } from "node:events";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "pino";
import { collectDefaultMetrics, Registry } from "prom-client";
import { parseListenAddress } from "../config/load.js";

/** A health check slower than this counts as unhealthy. */
export const HEALTH_TIMEOUT_MS = 5_000;
/** Idle keep-alive connections from the scraper are closed after this long. */
export const METRICS_KEEPALIVE_MS = 5_000;

/** A registry with Node's process metrics and `{service, host}` on every series. */
export function createMetricsRegistry(labels: { service: string; host: string }): Registry {
  const registry = new Registry();
  registry.setDefaultLabels(labels);
  collectDefaultMetrics({ register: registry, prefix: "mailinfra_" });
  return registry;
}

export interface MetricsServer {
  /** "host:port" actually bound. */
  readonly address: string;
  close(): Promise<void>;
}

export interface MetricsServerOptions {
  listen: string;
  registry: Registry;
  healthy: () => Promise<boolean>;
  logger?: Logger;
  /** Defaults to HEALTH_TIMEOUT_MS. */
  healthTimeoutMs?: number;
}

async function withTimeout(check: () => Promise<boolean>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      check(),
      new Promise<boolean>((r) => {
        timer = setTimeout(() => r(false), ms);
      }),
    ]);
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}

export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const { host, port } = parseListenAddress(options.listen);
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain" }).end("method not allowed\n");
      return;
    }
    const path = (req.url ?? "/").split("?")[0];
    if (path === "/metrics") {
      const body = await options.registry.metrics();
      res
        .writeHead(200, { "content-type": options.registry.contentType })
        .end(req.method === "HEAD" ? "" : body);
    } else if (path === "/healthz") {
      const ok = await withTimeout(options.healthy, options.healthTimeoutMs ?? HEALTH_TIMEOUT_MS);
      res.writeHead(ok ? 200 : 503, { "content-type": "text/plain" }).end(ok ? "ok\n" : "unhealthy\n");
    } else {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
    }
  };
  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      options.logger?.error({ err }, "metrics: request failed");
      if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain" });
      res.end("internal error\n");
    });
  });
  server.keepAliveTimeout = METRICS_KEEPALIVE_MS;
  server.listen({ host, port });
  await Promise.race([
    once(server, "listening"),
    once(server, "error").then(([err]) => {
      throw err;
    }),
  ]);
  const bound = server.address() as AddressInfo;
  const address =
    bound.family === "IPv6" ? `[${bound.address}]:${bound.port}` : `${bound.address}:${bound.port}`;
  return {
    address,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
