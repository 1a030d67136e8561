// The guests: one systemd-nspawn per host, booted with systemd as PID 1, each
// started from its own cgroup under a small supervisor that restarts it when the
// guest reboots (nspawn exits 133) and otherwise lets it stay down.
import { spawn } from "node:child_process";
import { closeSync, existsSync, openSync } from "node:fs";
import { mkdir, readdir, readFile, rm, rmdir } from "node:fs/promises";
import { join } from "node:path";
import { run, sleep } from "./exec.js";
import { cgroupRoots, paths } from "./paths.js";
import { BRIDGE, type HostName } from "./topology.js";

export function nspawnArgs(h: HostName): string[] {
  return [
    "--boot",
    "--register=no",
    "--keep-unit",
    `--network-bridge=${BRIDGE}`,
    "--resolv-conf=off",
    "--timezone=off",
    "--link-journal=no",
    "--console=read-only",
    `--machine=${h}`,
    `--hostname=${h}`,
    `--directory=${paths.root(h)}`,
  ];
}

// The supervisor: joins the guest's cgroups, then runs nspawn again only when the
// guest asked for a reboot (exit 133). It waits for that one PID, never a bare
// `wait` (NOTES-lab: that would wait for the guests).
const SUPERVISOR = `set -u
h=$1; nspawn_pid_file=$2; shift 2
for cg in $CGROUPS; do echo $$ > "$cg/$h/cgroup.procs"; done
while :; do
  systemd-nspawn "$@" </dev/null &
  pid=$!
  echo "$pid" > "$nspawn_pid_file"
  wait "$pid"; rc=$?
  echo "mailinfra-lab: $h: nspawn exited with $rc at $(date -u +%FT%TZ)"
  [ "$rc" -eq 133 ] || break
done
rm -f "$nspawn_pid_file"
exit "$rc"
`;

async function readPid(file: string): Promise<number | undefined> {
  const text = await readFile(file, "utf8").catch(() => "");
  const pid = Number.parseInt(text.trim(), 10);
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

async function cmdline(pid: number): Promise<string[]> {
  const raw = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
  return raw.split("\0").filter(Boolean);
}

/** The guest's nspawn process, if it runs (checked by its command line, not just the PID file). */
export async function nspawnPid(h: HostName): Promise<number | undefined> {
  const isOurs = async (pid: number) => {
    const argv = await cmdline(pid);
    return argv.some((a) => a.endsWith("systemd-nspawn")) && argv.includes(`--machine=${h}`);
  };
  const pid = await readPid(paths.nspawnPid(h));
  if (pid && (await isOurs(pid))) return pid;
  // The PID file may be gone (a crashed run, a deleted state folder): look in the guest's cgroup.
  for (const p of await cgroupPids(h)) if (await isOurs(p)) return p;
  return undefined;
}

/** The guest's PID 1 (systemd), as the machine sees it: nspawn's one child. */
export async function guestInitPid(h: HostName): Promise<number | undefined> {
  const pid = await nspawnPid(h);
  if (!pid) return undefined;
  const children = await readFile(`/proc/${pid}/task/${pid}/children`, "utf8").catch(() => "");
  for (const c of children.trim().split(/\s+/).filter(Boolean)) {
    const status = await readFile(`/proc/${c}/status`, "utf8").catch(() => "");
    const ns = /^NSpid:\s+(.*)$/m.exec(status)?.[1]?.trim().split(/\s+/);
    if (ns && ns.length > 1 && ns[ns.length - 1] === "1") return Number(c);
  }
  return undefined;
}

export function cgroupDirs(h: HostName): string[] {
  return cgroupRoots().map((r) => join(r, h));
}

/** Every process in the guest's cgroups (the supervisor, nspawn and the guest's own). */
export async function cgroupPids(h: HostName): Promise<number[]> {
  const pids = new Set<number>();
  const walk = async (dir: string): Promise<void> => {
    const procs = await readFile(join(dir, "cgroup.procs"), "utf8").catch(() => "");
    for (const p of procs.split("\n").filter(Boolean)) pids.add(Number(p));
    for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
      if (e.isDirectory()) await walk(join(dir, e.name));
    }
  };
  for (const d of cgroupDirs(h)) await walk(d);
  return [...pids];
}

/** Starts the guest detached from this process; returns the supervisor's PID. */
export async function startGuest(h: HostName): Promise<number> {
  // What is left of an earlier life of this guest (its nspawn was killed, so
  // its processes and its veth live on) would keep the new one from starting.
  if ((await cgroupPids(h)).length) {
    await killCgroup(h);
    const deadline = Date.now() + 5_000;
    while ((await cgroupPids(h)).length && Date.now() < deadline) await sleep(50);
  }
  const veth = `vb-${h}`.slice(0, 15);
  if (existsSync(`/sys/class/net/${veth}`)) await run("ip", ["link", "delete", veth], { allowFail: true });
  for (const d of cgroupDirs(h)) await mkdir(d, { recursive: true });
  await mkdir(paths.run, { recursive: true, mode: 0o700 });
  await mkdir(paths.logs, { recursive: true, mode: 0o700 });
  await rm(paths.nspawnPid(h), { force: true });
  const log = openSync(paths.log(h), "a", 0o600);
  const child = spawn(
    "bash",
    ["-c", SUPERVISOR, "mailinfra-lab-supervisor", h, paths.nspawnPid(h), ...nspawnArgs(h)],
    {
      detached: true,
      stdio: ["ignore", log, log],
      env: { PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin", CGROUPS: cgroupRoots().join(" ") },
    },
  );
  closeSync(log);
  child.unref();
  if (!child.pid) throw new Error(`${h}: could not start the supervisor`);
  // Wait for nspawn itself to be running (its PID file written and valid).
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (await nspawnPid(h)) return child.pid;
    if (child.exitCode !== null) break;
    await sleep(20);
  }
  const tail = await readFile(paths.log(h), "utf8").catch(() => "");
  throw new Error(`${h}: nspawn did not start:\n${tail.split("\n").slice(-15).join("\n")}`);
}

/** Power cut: SIGKILL to the guest's PID 1 takes its whole PID namespace down at once. */
export async function killGuest(h: HostName): Promise<boolean> {
  const init = await guestInitPid(h);
  if (!init) return false;
  process.kill(init, "SIGKILL");
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline && (await nspawnPid(h))) await sleep(50);
  return true;
}

/**
 * Clean shutdown: nspawn on SIGTERM asks the guest's systemd to power off. After
 * `graceMs`, what is left of the guest is killed.
 */
export async function stopGuests(hosts: readonly HostName[], graceMs = 15_000): Promise<void> {
  const orphans: HostName[] = [];
  for (const h of hosts) {
    const pid = await nspawnPid(h);
    if (pid) process.kill(pid, "SIGTERM");
    else orphans.push(h); // no nspawn to ask (it was killed): nothing will shut the rest down cleanly
  }
  const deadline = Date.now() + graceMs;
  let left = [...hosts];
  for (const h of orphans) await killCgroup(h);
  while (left.length && Date.now() < deadline) {
    const still: HostName[] = [];
    for (const h of left) if ((await cgroupPids(h)).length) still.push(h);
    left = still;
    if (left.length) await sleep(100);
  }
  for (const h of left) await killCgroup(h);
  const end = Date.now() + 5_000;
  while (Date.now() < end) {
    let any = false;
    for (const h of hosts) if ((await cgroupPids(h)).length) any = true;
    if (!any) return;
    await sleep(100);
  }
}

export async function killCgroup(h: HostName): Promise<void> {
  for (const pid of await cgroupPids(h)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
}

/** Removes the guest's cgroups, deepest first. Fails if a process is still in one. */
export async function removeCgroups(h: HostName): Promise<void> {
  const remove = async (dir: string): Promise<void> => {
    for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
      if (e.isDirectory()) await remove(join(dir, e.name));
    }
    if (existsSync(dir)) await rmdir(dir);
  };
  for (const d of cgroupDirs(h)) await remove(d);
}

export async function removeCgroupRoots(): Promise<void> {
  for (const r of cgroupRoots()) {
    for (const e of await readdir(r, { withFileTypes: true }).catch(() => [])) {
      if (e.isDirectory()) await removeCgroups(e.name as HostName);
    }
    if (existsSync(r)) await rmdir(r);
  }
}
