// Builds the real bundle into a temp dir (no node_modules anywhere above it)
// and runs it with node, as the hosts do.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);
export const RUNTIME_DIR = resolve(fileURLToPath(new URL(".", import.meta.url)), "../..");

export interface Bundle {
  dir: string;
  file: string;
  /** The node that runs it (default: this process's, node 20); node18.test.ts sets Debian's node 18. */
  node?: string;
  remove(): Promise<void>;
}

export async function buildBundle(): Promise<Bundle> {
  const dir = await mkdtemp(join(tmpdir(), "mailinfra-bundle-"));
  const file = join(dir, "mailinfra.mjs");
  await run(process.execPath, ["build.mjs", "--outfile", file], { cwd: RUNTIME_DIR });
  return { dir, file, remove: () => rm(dir, { recursive: true, force: true }) };
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Run the bundle to completion, cwd = its own directory. With `nodeArgs`, the
 * arguments up to "--" go to node itself.
 */
export function runBundle(
  bundle: Bundle,
  args: string[],
  timeoutMs = 20_000,
  nodeArgs = false,
): Promise<RunResult> {
  const sep = args.indexOf("--");
  const argv =
    nodeArgs && sep >= 0
      ? [...args.slice(0, sep), bundle.file, ...args.slice(sep + 1)]
      : [bundle.file, ...args];
  return new Promise((res, rej) => {
    execFile(
      bundle.node ?? process.execPath,
      argv,
      { cwd: bundle.dir, timeout: timeoutMs, env: { PATH: process.env.PATH ?? "/usr/bin:/bin" } },
      (err, stdout, stderr) => {
        if (err && typeof err.code !== "number") return rej(err);
        res({ code: err ? (err.code as number) : 0, stdout, stderr });
      },
    );
  });
}

/** A long-running `serve`: collects stdout JSON lines. */
export interface ServeProcess {
  child: ChildProcess;
  lines: Array<Record<string, unknown>>;
  stderr(): string;
  /** Resolves with the first log line matching. */
  waitFor(
    pred: (line: Record<string, unknown>) => boolean,
    timeoutMs?: number,
  ): Promise<Record<string, unknown>>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export function spawnServe(bundle: Bundle, args: string[]): ServeProcess {
  const child = spawn(bundle.node ?? process.execPath, [bundle.file, ...args], {
    cwd: bundle.dir,
    stdio: ["ignore", "pipe", "pipe"],
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
  });
  const lines: Array<Record<string, unknown>> = [];
  const waiters: Array<{
    pred: (l: Record<string, unknown>) => boolean;
    resolve: (l: Record<string, unknown>) => void;
  }> = [];
  let buf = "";
  let err = "";
  child.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
    buf += chunk;
    for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
      const text = buf.slice(0, i);
      buf = buf.slice(i + 1);
      let line: Record<string, unknown>;
      try {
        line = JSON.parse(text) as Record<string, unknown>;
      } catch {
        line = { raw: text };
      }
      lines.push(line);
      for (const w of [...waiters]) {
        if (w.pred(line)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    }
  });
  child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
    err += chunk;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.once("exit", (code, signal) => r({ code, signal })),
  );
  return {
    child,
    lines,
    stderr: () => err,
    exited,
    waitFor(pred, timeoutMs = 15_000) {
      const found = lines.find(pred);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () =>
            reject(
              new Error(
                `no matching log line within ${timeoutMs} ms; stdout: ${JSON.stringify(lines)} stderr: ${err}`,
              ),
            ),
          timeoutMs,
        );
        const w = {
          pred,
          resolve: (l: Record<string, unknown>) => {
            clearTimeout(timer);
            resolve(l);
          },
        };
        waiters.push(w);
        void exited.then(() => {
          if (waiters.includes(w)) {
            clearTimeout(timer);
            reject(
              new Error(`exited before a matching log line; stdout: ${JSON.stringify(lines)} stderr: ${err}`),
            );
          }
        });
      });
    },
  };
}

/** curl (a client nobody here wrote): status code and body. */
export async function curl(url: string): Promise<{ status: number; body: string }> {
  const { stdout } = await run("curl", ["-s", "-S", "--max-time", "10", "-w", "\n%{http_code}", url]);
  const i = stdout.lastIndexOf("\n");
  return { status: Number(stdout.slice(i + 1)), body: stdout.slice(0, i) };
}
