// up / down / status of the whole lab. `down` leaves nothing on the machine (no
// guest, mount, loop device, bridge or cgroup) and refuses to go on while a
// guest still runs; `up` first clears whatever a crashed earlier run left.
import { existsSync } from "node:fs";
import { chmod, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { run, sleep } from "./exec.js";
import {
  cgroupPids,
  guestInitPid,
  killGuest,
  nspawnPid,
  removeCgroupRoots,
  removeCgroups,
  startGuest,
  stopGuests,
} from "./guests.js";
import { bridgeDown, bridgeExists, bridgeUp } from "./network.js";
import { paths, REPO_ROOT } from "./paths.js";
import { customizeRoot, isMounted, mountRoot, unmountRoot } from "./rootfs.js";
import { sanAttach, sanDetach, sanLoops } from "./san.js";
import { connect, exec } from "./ssh.js";
import { HOST_NAMES, type HostName, loadTopology, SAN_HOSTS, type Topology } from "./topology.js";

export type Log = (msg: string) => void;

export function requireRoot(): void {
  if (process.getuid?.() !== 0) {
    throw new Error("the lab needs root (mounts, loop devices, a bridge, systemd-nspawn): run it as root");
  }
}

/** Installs the Debian packages the guests need, on the machine (they have no route out). */
export async function prereqs(log: Log): Promise<void> {
  const r = await run("bash", [`${REPO_ROOT}/scripts/prereqs.sh`], { allowFail: true });
  if (r.stdout.trim()) log(r.stdout.trim());
  if (r.code !== 0) throw new Error(`prerequisites missing:\n${r.stderr.trim()}`);
}

async function ensureStateDir(): Promise<void> {
  await mkdir(paths.state, { recursive: true, mode: 0o700 });
  await chmod(paths.state, 0o700);
}

/** The lab's SSH key (root on every guest accepts it). */
export async function ensureKey(): Promise<string> {
  if (!existsSync(paths.key)) {
    await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "mailinfra-lab", "-f", paths.key]);
  }
  await chmod(paths.key, 0o600);
  return readFile(`${paths.key}.pub`, "utf8");
}

export async function isUp(h: HostName): Promise<boolean> {
  return (await nspawnPid(h)) !== undefined;
}

async function labMounts(): Promise<string[]> {
  const info = await readFile("/proc/self/mountinfo", "utf8");
  return info
    .split("\n")
    .map((l) => l.split(" ")[4] ?? "")
    .filter((m) => m.startsWith(`${paths.hosts}/`));
}

/** Waits until sshd answers as root with the lab key and the guest's boot has settled. */
export async function waitForSsh(address: string, timeoutMs: number, privateKey: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const client = await connect({ host: address, privateKey, dialErrorLimit: 0, perDialTimeout: 5 });
      try {
        // Boot finished (running or degraded), so `systemctl` jobs do not race it.
        await exec(client, "timeout 60 systemctl is-system-running --wait >/dev/null 2>&1; true");
        return;
      } finally {
        client.end();
      }
    } catch (err) {
      last = err;
      await sleep(200);
    }
  }
  throw new Error(`${address}: no SSH after ${timeoutMs / 1000} s: ${String(last)}`);
}

async function writeKnownHosts(lines: Map<HostName, string>): Promise<void> {
  const old = (await readFile(paths.knownHosts, "utf8").catch(() => ""))
    .split("\n")
    .filter((l) => l && !lines.has((l.split(",")[0] ?? "") as HostName));
  await writeFile(paths.knownHosts, `${[...old, ...lines.values()].join("\n")}\n`, { mode: 0o600 });
}

export interface UpTimings {
  prepareMs: number;
  bootMs: number;
  totalMs: number;
  started: HostName[];
}

/** Brings every host up (only those not running when the lab is partly up). */
export async function up(log: Log, opts: { prereqs?: boolean } = {}): Promise<UpTimings> {
  const t0 = Date.now();
  // First, so that a user who is not root is shown the apt-get command it needs.
  if (opts.prereqs !== false) await prereqs(log);
  requireRoot();
  await ensureStateDir();
  const running: HostName[] = [];
  for (const h of HOST_NAMES) if (await isUp(h)) running.push(h);
  // Nothing of ours runs: whatever is left (even guest processes whose PID files
  // are gone) belongs to a crashed run, and `down` removes it.
  if (running.length === 0) await down(log);
  const topology = loadTopology();
  const pub = await ensureKey();
  const privateKey = await readFile(paths.key, "utf8");
  await bridgeUp();
  const san = await sanAttach();
  const todo = HOST_NAMES.filter((h) => !running.includes(h));
  if (running.length) log(`already running: ${running.join(" ")}`);
  const keyLines = new Map<HostName, string>();
  await Promise.all(
    todo.map(async (h) => {
      const { fresh } = await mountRoot(h);
      if (fresh) {
        const prepared = await customizeRoot(h, topology, pub, SAN_HOSTS.includes(h) ? san.minor : undefined);
        keyLines.set(h, prepared.hostKeyLine);
      }
    }),
  );
  await writeKnownHosts(keyLines);
  const t1 = Date.now();
  for (const h of todo) await startGuest(h);
  log(`booting ${todo.length} host(s): ${todo.join(" ")}`);
  await Promise.all(todo.map((h) => waitForSsh(topology.addresses[h], 120_000, privateKey)));
  const t2 = Date.now();
  log(`up: ${todo.length} host(s) answering SSH (prepare ${ms(t1 - t0)}, boot ${ms(t2 - t1)})`);
  return { prepareMs: t1 - t0, bootMs: t2 - t1, totalMs: t2 - t0, started: todo };
}

export const ms = (n: number) => `${(n / 1000).toFixed(1)} s`;

/**
 * Removes every trace of the lab from the machine. Guests are shut down first
 * (then killed after a grace period); if one still has a process after that,
 * nothing else is touched and the error names it.
 */
export async function down(log: Log, opts: { graceMs?: number } = {}): Promise<void> {
  requireRoot();
  const live: HostName[] = [];
  for (const h of HOST_NAMES) if ((await cgroupPids(h)).length) live.push(h);
  if (live.length) {
    log(`stopping ${live.join(" ")}`);
    await stopGuests(live, opts.graceMs ?? 10_000);
  }
  const still: string[] = [];
  for (const h of HOST_NAMES) {
    const pids = await cgroupPids(h);
    if (pids.length) still.push(`${h} (pids ${pids.join(" ")})`);
  }
  if (still.length) {
    throw new Error(`refusing to tear down: guests still running: ${still.join(", ")}`);
  }
  await clearEverything(log);
}

async function clearEverything(log: Log): Promise<void> {
  const removed: string[] = [];
  for (const m of (await labMounts()).sort((a, b) => b.length - a.length)) {
    await run("umount", [m]);
    removed.push(`mount ${m}`);
  }
  for (const h of HOST_NAMES) if (await isMounted(paths.root(h))) await unmountRoot(h);
  const loops = await sanLoops();
  await sanDetach();
  removed.push(...loops.map((l) => `loop ${l}`));
  if (bridgeExists()) {
    await bridgeDown();
    removed.push("bridge");
  }
  for (const h of HOST_NAMES) await removeCgroups(h);
  await removeCgroupRoots();
  if (existsSync(paths.hosts)) {
    await rm(paths.hosts, { recursive: true, force: true });
    removed.push("guest layers");
  }
  await rm(paths.run, { recursive: true, force: true });
  await rm(paths.knownHosts, { force: true });
  if (removed.length) log(`removed: ${removed.join(", ")}`);
}

export interface HostStatus {
  host: HostName;
  address: string;
  running: boolean;
  init?: number;
  ssh: boolean;
}

export async function status(topology: Topology = loadTopology()): Promise<{
  hosts: HostStatus[];
  bridge: boolean;
  loops: string[];
  mounts: string[];
}> {
  const privateKey = await readFile(paths.key, "utf8").catch(() => "");
  const hosts = await Promise.all(
    HOST_NAMES.map(async (h): Promise<HostStatus> => {
      const init = await guestInitPid(h);
      const s: HostStatus = {
        host: h,
        address: topology.addresses[h],
        running: init !== undefined,
        ssh: false,
      };
      if (init !== undefined) s.init = init;
      if (s.running && privateKey) {
        try {
          const c = await connect({ host: s.address, privateKey, dialErrorLimit: 0, perDialTimeout: 3 });
          c.end();
          s.ssh = true;
        } catch {
          s.ssh = false;
        }
      }
      return s;
    }),
  );
  return { hosts, bridge: bridgeExists(), loops: await sanLoops(), mounts: await labMounts() };
}

/** Power cut (SIGKILL to the guest's PID 1); its layer and the SAN stay. */
export async function kill(h: HostName): Promise<void> {
  requireRoot();
  if (!(await killGuest(h))) throw new Error(`${h} is not running`);
}

/** Starts one host again after a power cut (or after `kill`). */
export async function start(h: HostName, log: Log): Promise<void> {
  requireRoot();
  if (await isUp(h)) throw new Error(`${h} is already running`);
  if (!bridgeExists() || !(await isMounted(paths.root(h)))) {
    throw new Error(`${h}: the lab is not up (run \`lab up\`)`);
  }
  const t = loadTopology();
  await startGuest(h);
  await waitForSsh(t.addresses[h], 120_000, await readFile(paths.key, "utf8"));
  log(`${h} is up`);
}
