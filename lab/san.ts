// The shared SAN volume: a sparse file on a loop device, seen by both store
// hosts as /dev/sdb (made inside each guest; see rootfs.ts). Blank at first: the
// deployer formats it.
import { existsSync } from "node:fs";
import { rm, stat } from "node:fs/promises";
import { run } from "./exec.js";
import { paths } from "./paths.js";
import { SAN_BYTES } from "./topology.js";

/** Loop devices backed by the lab's SAN file (also ones a crashed run left). */
export async function sanLoops(): Promise<string[]> {
  if (!existsSync(paths.san)) {
    // The file may be gone while a loop still holds it: look for "(deleted)".
    const all = await run("losetup", ["--list", "--noheadings", "--output", "NAME,BACK-FILE"], {
      allowFail: true,
    });
    return all.stdout
      .split("\n")
      .map((l) => l.trim().split(/\s+/))
      .filter((f) => f[1] === paths.san)
      .map((f) => f[0] ?? "")
      .filter(Boolean);
  }
  const r = await run("losetup", ["--associated", paths.san], { allowFail: true });
  return r.stdout
    .split("\n")
    .map((l) => l.split(":")[0]?.trim() ?? "")
    .filter(Boolean);
}

/** Attaches a fresh blank volume; returns the loop device and its minor number. */
export async function sanAttach(): Promise<{ device: string; minor: number }> {
  const existing = await sanLoops();
  if (existing[0]) return { device: existing[0], minor: await minorOf(existing[0]) };
  await rm(paths.san, { force: true });
  await run("truncate", ["--size", String(SAN_BYTES), paths.san]);
  const r = await run("losetup", ["--find", "--show", paths.san]);
  const device = r.stdout.trim();
  return { device, minor: await minorOf(device) };
}

async function minorOf(device: string): Promise<number> {
  const st = await stat(device);
  // Linux dev_t: minor is the low 8 bits plus bits 20.. (glibc's gnu_dev_minor).
  return (st.rdev & 0xff) | ((st.rdev >> 12) & ~0xff);
}

export async function sanDetach(): Promise<void> {
  for (const d of await sanLoops()) await run("losetup", ["--detach", d]);
  await rm(paths.san, { force: true });
}
