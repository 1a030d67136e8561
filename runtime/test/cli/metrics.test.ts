import { Counter } from "prom-client";
import { afterAll, describe, expect, it } from "vitest";
import { createMetricsRegistry, type MetricsServer, startMetricsServer } from "../../src/metrics/index.js";
import { curl } from "./bundle.js";

const servers: MetricsServer[] = [];
afterAll(async () => {
  for (const s of servers) await s.close();
});

describe("metrics server", () => {
  it("serves the registry and follows the health check (checked with curl)", async () => {
    const registry = createMetricsRegistry({ service: "imap", host: "store1" });
    const c = new Counter({ name: "mailinfra_test_total", help: "t", registers: [registry] });
    c.inc(3);
    let healthy = true;
    const server = await startMetricsServer({
      listen: "127.0.0.1:0",
      registry,
      healthy: async () => healthy,
    });
    servers.push(server);
    expect(server.address).toMatch(/^127\.0\.0\.1:\d+$/);
    const m = await curl(`http://${server.address}/metrics`);
    expect(m.status).toBe(200);
    expect(m.body).toContain('mailinfra_test_total{service="imap",host="store1"} 3');
    expect(await curl(`http://${server.address}/healthz`)).toEqual({ status: 200, body: "ok\n" });
    healthy = false;
    expect(await curl(`http://${server.address}/healthz`)).toEqual({ status: 503, body: "unhealthy\n" });
  });

  it("answers 503 when the health check throws", async () => {
    const server = await startMetricsServer({
      listen: "127.0.0.1:0",
      registry: createMetricsRegistry({ service: "pop3", host: "h" }),
      healthy: async () => {
        throw new Error("store not mounted");
      },
    });
    servers.push(server);
    expect((await curl(`http://${server.address}/healthz`)).status).toBe(503);
  });

  it("fails to start on a port in use", async () => {
    const first = await startMetricsServer({
      listen: "127.0.0.1:0",
      registry: createMetricsRegistry({ service: "a", host: "h" }),
      healthy: async () => true,
    });
    servers.push(first);
    await expect(
      startMetricsServer({
        listen: first.address,
        registry: createMetricsRegistry({ service: "b", host: "h" }),
        healthy: async () => true,
      }),
    ).rejects.toThrow(/EADDRINUSE/);
  });
});

describe("HEALTH_TIMEOUT_MS", () => {
  it("counts a health check slower than the timeout as unhealthy", async () => {
    const server = await startMetricsServer({
      listen: "127.0.0.1:0",
      registry: createMetricsRegistry({ service: "imap", host: "h" }),
      healthy: () => new Promise<boolean>((r) => setTimeout(() => r(true), 2_000)),
      healthTimeoutMs: 200,
    });
    servers.push(server);
    const t0 = Date.now();
    expect((await curl(`http://${server.address}/healthz`)).status).toBe(503);
    expect(Date.now() - t0).toBeLessThan(1_500);
  });
});
