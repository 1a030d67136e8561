/**
 * Lock files shared by the processes on the store host (IMAP, POP3 and LMTP
 * run as separate services): a symlink whose target is "<pid> <host> <time> <boot>" —
 * created atomically (EEXIST when held) and read back in one call each, the
 * old lockfile trick of Emacs and Mozilla.
 * A lock whose holder is gone (pid dead on this host, or written before the
 * host last booted: its pid may be someone else's now) or that is older than
 * its stale age is broken. Breaking renames the lock aside first, so of two
 * processes breaking the same stale lock only one wins.
 *
 * The target stays under 60 bytes: ext4 keeps such a "fast" symlink inside
 * the inode, while a longer one costs a data block and is about ten times
 * slower to create — on every index update. So the host is a short hash of
 * its name and the boot id is cut to 12 hex digits.
 */
import { createHash, randomBytes } from "node:crypto";
import { readFileSync, symlinkSync, unlinkSync } from "node:fs";
import { lstat, readlink, rename, symlink, unlink } from "node:fs/promises";
import { hostname } from "node:os";
import { isErrno, sleep } from "./fsutil.js";
import { StoreError } from "./types.js";

const HOSTNAME = hostname();
/** This host in lock targets: 8 hex digits of a hash of its name (the store nodes differ in name). */
export const LOCK_HOST = createHash("sha256").update(HOSTNAME).digest("hex").slice(0, 8);
/** Changes at every boot (Linux); "" where unavailable. */
const BOOT_ID = (() => {
  try {
    return readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
  } catch {
    return "";
  }
})();
export const LOCK_BOOT = BOOT_ID.replace(/-/g, "").slice(0, 12);
/** ext4 stores a symlink target shorter than this in the inode itself. */
export const FAST_SYMLINK_MAX_BYTES = 59;

export function lockTarget(): string {
  return `${process.pid} ${LOCK_HOST} ${Date.now().toString(36)} ${LOCK_BOOT}`;
}

export interface LockOptions {
  /** Give up (TEMPFAIL, or INUSE when `failFast`) after this long. */
  timeoutMs: number;
  /** A lock older than this is taken as abandoned (0 = never by age). */
  staleMs: number;
  /** A lock written by another host is abandoned (active/passive store: only one node mounts). */
  otherHostIsStale: boolean;
  /** Do not wait: INUSE at once. */
  failFast?: boolean;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return isErrno(err, "EPERM");
  }
}

/** The lock's content when it is abandoned, else null. */
async function staleContent(path: string, options: LockOptions): Promise<string | null> {
  let text: string;
  let mtimeMs: number;
  try {
    [text, mtimeMs] = await Promise.all([readlink(path), lstat(path).then((s) => s.mtimeMs)]);
  } catch (err) {
    if (isErrno(err, "ENOENT")) return null; // released meanwhile: just retry
    throw err;
  }
  const [pidText, host, , boot] = text.split(" ");
  const pid = Number(pidText);
  let stale: boolean;
  if (options.staleMs > 0 && Date.now() - mtimeMs > options.staleMs) stale = true;
  else if (!host)
    stale = Date.now() - mtimeMs > 5000; // being written, or torn by a crash
  // (the full host name and boot id: locks written before targets were shortened)
  else if (host !== LOCK_HOST && host !== HOSTNAME) stale = options.otherHostIsStale;
  else if (boot !== undefined && BOOT_ID !== "" && boot !== LOCK_BOOT && boot !== BOOT_ID) stale = true;
  else stale = Number.isInteger(pid) && pid > 0 && !alive(pid);
  return stale ? text : null;
}

/** Moves the lock aside; puts it back when it turned out to be a fresh one (another breaker won). */
async function breakLock(path: string, staleText: string): Promise<void> {
  const aside = `${path}.stale-${randomBytes(4).toString("hex")}`;
  try {
    await rename(path, aside);
  } catch (err) {
    if (isErrno(err, "ENOENT")) return;
    throw err;
  }
  const text = await readlink(aside).catch(() => staleText);
  if (text !== staleText) await symlink(text, path).catch(() => undefined);
  await unlink(aside).catch(() => undefined);
}

/** Takes the lock; resolves to its release function. */
export async function acquireLock(path: string, options: LockOptions): Promise<() => Promise<void>> {
  const deadline = Date.now() + options.timeoutMs;
  let delay = 1;
  for (;;) {
    try {
      // Metadata-only calls are made synchronously on the hot path: a thread-pool
      // round trip costs more than the syscall itself.
      symlinkSync(lockTarget(), path);
      let released = false;
      return async () => {
        if (released) return;
        released = true;
        try {
          unlinkSync(path);
        } catch {
          // already broken as stale by someone else
        }
      };
    } catch (err) {
      if (!isErrno(err, "EEXIST")) throw err;
    }
    const stale = await staleContent(path, options);
    if (stale !== null) {
      await breakLock(path, stale);
      continue;
    }
    if (options.failFast) throw new StoreError("INUSE", "locked by another session");
    if (Date.now() > deadline) throw new StoreError("TEMPFAIL", "timed out waiting for a mailbox lock");
    await sleep(delay);
    delay = Math.min(delay * 2, 20);
  }
}

/** A FIFO mutex for one process (the file lock is per process, this orders the callers inside it). */
export class Mutex {
  private tail: Promise<unknown> = Promise.resolve();
  private pending = 0;

  get idle(): boolean {
    return this.pending === 0;
  }

  run<T>(fn: () => Promise<T>): Promise<T> {
    this.pending += 1;
    const result = this.tail.then(fn);
    this.tail = result.then(
      () => {
        this.pending -= 1;
      },
      () => {
        this.pending -= 1;
      },
    );
    return result;
  }
}
