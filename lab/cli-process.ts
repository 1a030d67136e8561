// `tsx lab/cli.ts …` in a child process, as `npm run lab` runs it: how the lab's
// end-to-end tests and its benchmark drive the lab. Output is kept (stdout and
// stderr interleaved) for failure messages.
import { spawn } from "node:child_process";
import { join } from "node:path";
import { REPO_ROOT } from "./paths.js";

export interface CliResult {
  code: number;
  out: string;
  /** Wall time of the run. */
  ms: number;
}

/** Runs the lab's CLI; with `timeoutMs` the child is sent SIGTERM after that long. */
export function runLabCli(args: string[], timeoutMs?: number): Promise<CliResult> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(join(REPO_ROOT, "node_modules/.bin/tsx"), [join(REPO_ROOT, "lab/cli.ts"), ...args], {
      cwd: REPO_ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    const keep = (d: Buffer) => {
      out += d.toString();
    };
    child.stdout.on("data", keep);
    child.stderr.on("data", keep);
    const timer = timeoutMs === undefined ? undefined : setTimeout(() => child.kill("SIGTERM"), timeoutMs);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? 1, out, ms: Date.now() - t0 });
    });
  });
}
