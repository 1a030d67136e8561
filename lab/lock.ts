// The suite-level lock: one lab per machine.
import { spawn } from "node:child_process";

/**
 * One lab per machine: a test file (or the benchmark) holds this lock from its
 * first `lab` command to its last, so two suites started at once (another
 * checkout's CI, a developer's run) take turns instead of tearing each other's
 * hosts down. Released when `release` is called or this process dies.
 */
export function labLock(file = "/run/lock/mailinfra-lab.lock"): Promise<() => void> {
  return new Promise((resolve, reject) => {
    const holder = spawn("flock", ["--exclusive", file, "-c", "echo locked; exec cat >/dev/null"], {
      stdio: ["pipe", "pipe", "inherit"],
    });
    holder.on("error", reject);
    holder.stdout.once("data", () => resolve(() => holder.stdin.end()));
    holder.on("close", (code) => reject(new Error(`flock ${file} exited with ${code}`)));
  });
}
