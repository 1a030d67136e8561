// Where the lab keeps its state: `.lab-state/` at the repository root (mode 0700,
// gitignored). Keys and secrets in it are 0600.
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
/**
 * The workspace the machine's checkout lives in: hidden from the guests. A
 * checkout directly under `/` hides only itself (hiding `/` would hide the
 * guests' whole root filesystem).
 */
export const WORKSPACE = dirname(REPO_ROOT) === "/" ? REPO_ROOT : dirname(REPO_ROOT);

export const STATE_DIR = process.env.MAILINFRA_LAB_STATE ?? join(REPO_ROOT, ".lab-state");

export const paths = {
  state: STATE_DIR,
  key: join(STATE_DIR, "id_ed25519"),
  knownHosts: join(STATE_DIR, "known_hosts"),
  secrets: join(STATE_DIR, "secrets.json"),
  san: join(STATE_DIR, "san.img"),
  logs: join(STATE_DIR, "logs"),
  run: join(STATE_DIR, "run"),
  hosts: join(STATE_DIR, "hosts"),
  hostDir: (h: string) => join(STATE_DIR, "hosts", h),
  upper: (h: string) => join(STATE_DIR, "hosts", h, "upper"),
  work: (h: string) => join(STATE_DIR, "hosts", h, "work"),
  root: (h: string) => join(STATE_DIR, "hosts", h, "root"),
  log: (h: string) => join(STATE_DIR, "logs", `${h}.log`),
  supervisorPid: (h: string) => join(STATE_DIR, "run", `${h}.pid`),
  nspawnPid: (h: string) => join(STATE_DIR, "run", `${h}.nspawn.pid`),
};

/**
 * Per-guest cgroups (NOTES-lab: otherwise all guests share nspawn's payload and
 * supervisor groups): on the hybrid layout both the unified and the named
 * systemd hierarchy, on a pure cgroup2 machine the one tree.
 */
export function cgroupRoots(): string[] {
  if (existsSync("/sys/fs/cgroup/unified/cgroup.procs")) {
    return ["/sys/fs/cgroup/unified/mailinfra-lab", "/sys/fs/cgroup/systemd/mailinfra-lab"];
  }
  return ["/sys/fs/cgroup/mailinfra-lab"];
}
