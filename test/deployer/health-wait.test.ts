import { spawn } from "node:child_process";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { HEALTH_WAIT_JS, installScript } from "../../components/runtime.js";

/** Runs the install step's health wait with this machine's node; resolves its exit code. */
function healthWait(port: number, seconds: number): Promise<number | null> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, ["-e", HEALTH_WAIT_JS, String(port), String(seconds)], {
      stdio: "ignore",
    });
    p.on("exit", (code) => resolve(code));
  });
}

let server: Server | undefined;
afterEach(() => new Promise<void>((r) => (server ? server.close(() => r()) : r())));

function listen(handler: (n: number) => number): Promise<number> {
  let n = 0;
  const s = createServer((req, res) => {
    res.statusCode = req.url === "/healthz" ? handler(++n) : 404;
    res.end();
  });
  server = s;
  return new Promise((r) => s.listen(0, "127.0.0.1", () => r((s.address() as AddressInfo).port)));
}

describe("an install step waits for the services it started to be healthy", () => {
  it("waits through 503s until /healthz answers 200", async () => {
    const port = await listen((n) => (n < 4 ? 503 : 200));
    expect(await healthWait(port, 10)).toBe(0);
  });

  it("fails when /healthz never answers 200 in time", async () => {
    const port = await listen(() => 503);
    const t = Date.now();
    expect(await healthWait(port, 1)).toBe(1);
    expect(Date.now() - t).toBeGreaterThanOrEqual(1000);
  });

  it("fails when nothing listens", async () => {
    const port = await listen(() => 200);
    await new Promise<void>((r) => server?.close(() => r()));
    server = undefined;
    expect(await healthWait(port, 1)).toBe(1);
  });

  it("checks each (re)started boot unit on its own metrics port", () => {
    const script = installScript({
      runtimeYaml: "",
      files: [],
      units: [
        { service: "smtp", text: "", heartbeatManaged: false },
        { service: "lmtp", text: "", heartbeatManaged: true },
      ],
      user: "mailinfra",
      prefix: "/opt/mailinfra",
      nodePath: "/usr/bin/node",
    });
    expect(script).toContain("127.0.0.1:9125/healthz");
    // Heartbeat's units are started by Heartbeat on the active node, not waited for here.
    expect(script).not.toContain("127.0.0.1:9124/healthz");
  });
});
