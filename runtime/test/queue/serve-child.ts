/**
 * The SMTP service (MX only) in its own process (fixtures/serve.ts), for
 * tests that need a running service apart from the test: under strace, or
 * driven by `mailinfra queue` from outside. Every process is ended by its PID.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { makeConfig, type World } from "../smtp/harness.js";

const SERVE = fileURLToPath(new URL("./fixtures/serve.ts", import.meta.url));

export interface ServeChild {
  child: ChildProcess;
  /** The node process running the service (under strace: strace's child). */
  pid: number;
  mx: number;
  stop(): Promise<void>;
}

/** Writes a runtime config (JSON, which is YAML) for fixtures/serve.ts and `mailinfra --config`. */
export async function writeConfig(
  world: World,
  queueDir: string,
  lmtpPort: number,
  queue: Record<string, unknown> = {},
): Promise<string> {
  const config = makeConfig({ queueDir, lmtpPort, queue });
  const json = {
    ...config,
    ldap: world.slapd.ldapConfig({ cacheTtlSeconds: 0 }),
    smtp: { ...config.smtp, relay: undefined },
  };
  const file = join(queueDir, "..", `config-${lmtpPort}-${Date.now()}.json`);
  await writeFile(file, JSON.stringify(json));
  return file;
}

async function childOf(pid: number, deadline: number): Promise<number> {
  for (;;) {
    const text = await readFile(`/proc/${pid}/task/${pid}/children`, "utf8").catch(() => "");
    const found = Number(text.trim().split(/\s+/)[0]);
    if (found > 0) return found;
    if (Date.now() > deadline) throw new Error(`no child of ${pid}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Starts the service; with `strace`, under `strace <args> -o <file>`. Resolves once it listens. */
export async function serveChild(
  configFile: string,
  strace?: { args: string[]; output: string },
): Promise<ServeChild> {
  const node = [process.execPath, "--import", "tsx", SERVE, configFile];
  const [cmd, ...args] = strace ? ["strace", ...strace.args, "-o", strace.output, ...node] : node;
  const child = spawn(cmd ?? "", args, { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stderr?.on("data", (d: Buffer) => {
    err += d.toString();
  });
  const deadline = Date.now() + 30_000;
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.includes("\n")) resolve();
    });
    child.once("exit", (code) => reject(new Error(`serve exited ${code}: ${err}`)));
    setTimeout(() => reject(new Error(`serve did not start: ${err}`)), deadline - Date.now());
  });
  const addresses = JSON.parse(out.slice(out.indexOf(" ") + 1)) as string[];
  const mx = Number(addresses[0]?.split(":").pop());
  const pid = strace && child.pid ? await childOf(child.pid, deadline) : (child.pid ?? 0);
  return {
    child,
    pid,
    mx,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, "exit");
      // the service by its PID (serve.ts drains on SIGTERM); strace ends with it
      process.kill(pid, "SIGTERM");
      const timer = setTimeout(() => {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // already gone
        }
      }, 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}
