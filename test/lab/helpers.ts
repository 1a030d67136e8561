// Helpers for the lab's end-to-end tests: run the lab's CLI as users do, SSH to
// hosts, and list what the lab may have left on the machine.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { runLabCli } from "../../lab/cli-process.js";
import { cgroupRoots, paths } from "../../lab/paths.js";
import { labExec } from "../../lab/ssh.js";

export { labLock } from "../../lab/lock.js";

import { BRIDGE, HOST_NAMES, type HostName, loadTopology } from "../../lab/topology.js";

export const topology = loadTopology();
export const addr = (h: HostName) => topology.addresses[h];

export type { CliResult } from "../../lab/cli-process.js";

/** `tsx lab/cli.ts …` as `npm run lab` runs it; output is kept for failure messages. */
export const lab = (args: string[], timeoutMs = 600_000) => runLabCli(args, timeoutMs);

/** Runs a command on a host as root with the lab's key; returns trimmed stdout, fails on non-zero exit. */
export async function sh(h: HostName | string, cmd: string, stdin?: string): Promise<string> {
  const address = (HOST_NAMES as readonly string[]).includes(h) ? addr(h as HostName) : h;
  const r = await labExec(address, cmd, stdin === undefined ? {} : { stdin });
  if (r.code !== 0) throw new Error(`${h}: ${cmd}: exit ${r.code}: ${r.combined}`);
  return r.stdout.trim();
}

export async function shCode(h: HostName, cmd: string): Promise<number | null> {
  return (await labExec(addr(h), cmd)).code;
}

/** Everything of the lab the machine could still hold; empty when the lab is fully down. */
export function leftovers(): string[] {
  const found: string[] = [];
  if (existsSync(`/sys/class/net/${BRIDGE}`)) found.push(`bridge ${BRIDGE}`);
  for (const l of readdirSync("/sys/class/net")) {
    if (HOST_NAMES.some((h) => l === `vb-${h}`.slice(0, 15))) found.push(`veth ${l}`);
  }
  for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    const m = line.split(" ")[4];
    if (m?.startsWith(paths.state)) found.push(`mount ${m}`);
  }
  for (const dev of readdirSync("/sys/block").filter((d) => d.startsWith("loop"))) {
    const back = join("/sys/block", dev, "loop/backing_file");
    if (existsSync(back) && readFileSync(back, "utf8").trim().startsWith(paths.san))
      found.push(`loop /dev/${dev}`);
  }
  for (const r of cgroupRoots()) if (existsSync(r)) found.push(`cgroup ${r}`);
  for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    const argv = (() => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
      } catch {
        return [];
      }
    })();
    if (
      argv.some((a) => a.endsWith("systemd-nspawn")) &&
      argv.some((a) => a.startsWith(`--directory=${paths.hosts}`))
    ) {
      found.push(`nspawn pid ${pid}`);
    }
  }
  if (existsSync(paths.hosts)) found.push(`guest layers ${paths.hosts}`);
  return found;
}
