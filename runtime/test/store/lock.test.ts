import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, readlink, rm, symlink } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  acquireLock,
  FAST_SYMLINK_MAX_BYTES,
  LOCK_BOOT,
  LOCK_HOST,
  type LockOptions,
} from "../../src/store/lock.js";
import { StoreError } from "../../src/store/types.js";

const POP3: LockOptions = { timeoutMs: 0, staleMs: 0, otherHostIsStale: true, failFast: true };
const BOOT = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
let dir: string;

/** A pid that certainly belongs to no process: one that just exited. */
function deadPid(): number {
  const r = spawnSync("true");
  return r.pid as number;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "lock-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function inUse(path: string): Promise<boolean> {
  try {
    const release = await acquireLock(path, POP3);
    await release();
    return false;
  } catch (err) {
    if (err instanceof StoreError && err.code === "INUSE") return true;
    throw err;
  }
}

describe("lock files", () => {
  it("a live holder keeps the lock; its release frees it", async () => {
    const path = join(dir, "a.lock");
    const release = await acquireLock(path, POP3);
    const target = await readlink(path);
    expect(target).toMatch(new RegExp(`^${process.pid} ${LOCK_HOST} [0-9a-z]+ ${LOCK_BOOT}$`));
    expect(LOCK_BOOT).toBe(BOOT.replace(/-/g, "").slice(0, 12));
    // short enough for an ext4 fast symlink, even with a 7-digit pid and a long host name
    expect(target.length + 7 - String(process.pid).length).toBeLessThanOrEqual(FAST_SYMLINK_MAX_BYTES);
    expect(await inUse(path)).toBe(true);
    await release();
    expect(await inUse(path)).toBe(false);
  });

  it("breaks locks of dead processes, of another boot and (for the maildrop) of another host", async () => {
    const cases = [
      `${deadPid()} ${LOCK_HOST} ${Date.now().toString(36)} ${LOCK_BOOT}`,
      `${process.pid} ${LOCK_HOST} ${Date.now().toString(36)} 000000000000`,
      `${process.pid} 0badc0de ${Date.now().toString(36)} ${LOCK_BOOT}`,
      // the long form older versions wrote
      `${deadPid()} ${hostname()} ${Date.now()} ${BOOT}`,
      `${process.pid} ${hostname()} ${Date.now()} 00000000-0000-0000-0000-000000000000`,
      `${process.pid} other-node.example ${Date.now()} ${BOOT}`,
    ];
    for (const [i, target] of cases.entries()) {
      const path = join(dir, `stale${i}.lock`);
      await symlink(target, path);
      expect(await inUse(path), target).toBe(false);
    }
    // a live holder in the long form is still respected
    const old = join(dir, "old-live.lock");
    await symlink(`${process.pid} ${hostname()} ${Date.now()} ${BOOT}`, old);
    expect(await inUse(old)).toBe(true);
    // the index lock does not trust another host's lock, only its age
    const path = join(dir, "index.lock");
    await symlink(`1 other-node.example ${Date.now()} x`, path);
    await expect(
      acquireLock(path, { timeoutMs: 50, staleMs: 30_000, otherHostIsStale: false }),
    ).rejects.toThrow(/timed out/);
  });
});
