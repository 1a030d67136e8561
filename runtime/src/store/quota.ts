/**
 * Per-account quota in the Maildir++ `maildirsize` file (Courier's
 * README.maildirquota, which Dovecot implements too): the first line is the
 * limit ("<bytes>S"), then "<bytes> <count>" lines are appended on every save
 * and expunge; usage is their sum. The file is recalculated from the folders
 * when it is missing or damaged, when the limit changed, when it reached
 * 5120 bytes, or when it says "over quota" and is older than 15 minutes (the
 * Maildir++ rules), and replaced atomically by rename.
 *
 * Concurrency (IMAP, POP3 and LMTP are separate processes on one store): every
 * change that makes messages appear or disappear runs under the account's
 * quota lock together with its maildirsize line (`withUsage`), and a
 * recalculation scans under the same lock. So a scan never sees a message
 * whose line is still to come, nor misses one whose line went into the file
 * it replaces: the totals stay exact. Renames that only change flags (new/ →
 * cur/) do not take the lock; the scan repeats while directory mtimes move.
 */

import { randomBytes } from "node:crypto";
import { constants, statSync } from "node:fs";
import { appendFile, readdir, readFile, stat, unlink } from "node:fs/promises";
import { join } from "node:path";
import { parseName } from "./filename.js";
import { isErrno, writeAtomic } from "./fsutil.js";
import { acquireLock, Mutex } from "./lock.js";

export const QUOTA_FILE = "maildirsize";
/** Our own name: Dovecot's dotlock `maildirsize.lock` holds a pid file, ours is a symlink lock (lock.ts). */
export const QUOTA_LOCK_FILE = "mailinfra-quota.lock";
/** Maildir++: a maildirsize file this big is recalculated. */
export const QUOTA_FILE_MAX_BYTES = 5120;
/** Maildir++: an over-quota maildirsize older than this is recalculated (files may have been removed behind it). */
export const QUOTA_STALE_MS = 15 * 60_000;
/** Holders keep the quota lock for a few renames and one short write. */
export const QUOTA_LOCK_TIMEOUT_MS = 15_000;
export const QUOTA_LOCK_STALE_MS = 30_000;
/** A recalculation rescans while flag renames move the directories under it, at most this often. */
export const QUOTA_SCAN_TRIES = 5;

export interface Usage {
  bytes: number;
  messages: number;
}

/** Adds one folder's new/ and cur/ to `usage`; a message seen in both (renamed mid-scan) counts once. */
async function scanFolder(folder: string, usage: Usage): Promise<void> {
  const seen = new Set<string>();
  for (const sub of ["new", "cur"]) {
    const dir = join(folder, sub);
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (err) {
      if (isErrno(err, "ENOENT")) continue;
      throw err;
    }
    for (const name of names) {
      if (name.startsWith(".")) continue;
      const parsed = parseName(name);
      if (seen.has(parsed.base)) continue;
      seen.add(parsed.base);
      const size = parsed.size ?? (await stat(join(dir, name)).catch(() => ({ size: 0 }))).size;
      usage.bytes += size;
      usage.messages += 1;
    }
  }
}

async function folderPaths(userRoot: string): Promise<string[]> {
  const folders = [userRoot];
  for (const entry of await readdir(userRoot, { withFileTypes: true })) {
    if (entry.isDirectory() && entry.name.startsWith(".") && !entry.name.startsWith("..")) {
      folders.push(join(userRoot, entry.name));
    }
  }
  return folders;
}

/** The mtimes of the tree a scan reads: changes when a folder or a message name appears or goes. */
function treeStamp(folders: string[]): string {
  const parts: string[] = [];
  for (const folder of folders) {
    for (const sub of ["", "new", "cur"]) {
      const st = statSync(join(folder, sub), { bigint: true, throwIfNoEntry: false });
      parts.push(st ? String(st.mtimeNs) : "-");
    }
  }
  return parts.join(",");
}

/** Usage from the files themselves: every folder's new/ and cur/. */
export async function calculateUsage(userRoot: string): Promise<Usage> {
  let usage: Usage = { bytes: 0, messages: 0 };
  for (let attempt = 0; attempt < QUOTA_SCAN_TRIES; attempt++) {
    const folders = await folderPaths(userRoot);
    const before = treeStamp(folders);
    usage = { bytes: 0, messages: 0 };
    for (const folder of folders) await scanFolder(folder, usage);
    if (treeStamp(await folderPaths(userRoot)) === before) break;
  }
  return usage;
}

/** One account's lock: a mutex orders this process's callers, the lock file the processes. */
const mutexes = new Map<string, Mutex>();

async function withQuotaLock<T>(userRoot: string, fn: () => Promise<T>): Promise<T> {
  let mutex = mutexes.get(userRoot);
  if (!mutex) {
    mutex = new Mutex();
    mutexes.set(userRoot, mutex);
  }
  const m = mutex;
  try {
    return await m.run(async () => {
      const release = await acquireLock(join(userRoot, QUOTA_LOCK_FILE), {
        timeoutMs: QUOTA_LOCK_TIMEOUT_MS,
        staleMs: QUOTA_LOCK_STALE_MS,
        otherHostIsStale: false,
      });
      try {
        return await fn();
      } finally {
        await release();
      }
    });
  } finally {
    if (m.idle && mutexes.get(userRoot) === m) mutexes.delete(userRoot);
  }
}

/** Parsed maildirsize per file version (inode, size, mtime): a stat instead of a read when unchanged. */
const cache = new Map<string, { key: string; limit: number; usage: Usage }>();
const CACHE_MAX = 10_000;

function fileKey(file: string): string {
  const st = statSync(file, { bigint: true, throwIfNoEntry: false });
  return st ? `${st.ino}:${st.size}:${st.mtimeNs}` : "";
}

function remember(file: string, key: string, limit: number, usage: Usage): void {
  if (!key) return;
  if (cache.size >= CACHE_MAX) cache.clear();
  cache.set(file, { key, limit, usage: { ...usage } });
}

/** The usage a maildirsize file states, or null when it must be recalculated. */
export function parseQuotaFile(
  text: string,
  limitBytes: number,
  mtimeMs: number,
  now = Date.now(),
): Usage | null {
  if (text.length >= QUOTA_FILE_MAX_BYTES) return null;
  const lines = text.split("\n");
  if (lines[0] !== `${limitBytes}S`) return null;
  const usage: Usage = { bytes: 0, messages: 0 };
  for (const line of lines.slice(1)) {
    if (line === "") continue;
    const m = /^\s*(-?\d+)\s+(-?\d+)\s*$/.exec(line);
    if (!m) return null;
    usage.bytes += Number(m[1]);
    usage.messages += Number(m[2]);
  }
  if (usage.bytes < 0 || usage.messages < 0) return null;
  if (usage.bytes > limitBytes && now - mtimeMs > QUOTA_STALE_MS) return null;
  return usage;
}

async function readQuotaFile(file: string, limitBytes: number): Promise<Usage | null> {
  let text: string;
  let mtimeMs: number;
  try {
    [text, mtimeMs] = await Promise.all([readFile(file, "utf8"), stat(file).then((s) => s.mtimeMs)]);
  } catch (err) {
    if (isErrno(err, "ENOENT")) return null;
    throw err;
  }
  return parseQuotaFile(text, limitBytes, mtimeMs);
}

export async function readUsage(userRoot: string, limitBytes: number): Promise<Usage> {
  const file = join(userRoot, QUOTA_FILE);
  const key = fileKey(file);
  const hit = cache.get(file);
  if (key && hit?.key === key && hit.limit === limitBytes) return { ...hit.usage };
  const usage = await readQuotaFile(file, limitBytes);
  if (usage) {
    remember(file, key, limitBytes, usage);
    return usage;
  }
  return recalculate(userRoot, limitBytes);
}

async function recalculate(userRoot: string, limitBytes: number): Promise<Usage> {
  const file = join(userRoot, QUOTA_FILE);
  return withQuotaLock(userRoot, async () => {
    // Another session may have recalculated while we waited for the lock.
    const current = await readQuotaFile(file, limitBytes);
    if (current) return current;
    const usage = await calculateUsage(userRoot);
    // Unique per writer; not fsynced: a lost file is recalculated.
    const tmp = join(userRoot, `${QUOTA_FILE}.tmp${process.pid}.${randomBytes(4).toString("hex")}`);
    await writeAtomic(tmp, file, userRoot, `${limitBytes}S\n${usage.bytes} ${usage.messages}\n`, false);
    remember(file, fileKey(file), limitBytes, usage);
    return usage;
  });
}

/** Appends one usage line; a missing file stays missing (the next read recalculates). Under the quota lock. */
async function appendLine(userRoot: string, bytes: number, messages: number): Promise<void> {
  if (bytes === 0 && messages === 0) return;
  const file = join(userRoot, QUOTA_FILE);
  const line = `${bytes} ${messages}\n`;
  const before = cache.get(file);
  try {
    // O_APPEND without O_CREAT; not fsynced (recalculable). On the thread pool:
    // a write that extends a file can wait for the journal while fsyncs commit
    // it, and the event loop must not wait with it.
    await appendFile(file, line, { flag: constants.O_WRONLY | constants.O_APPEND });
  } catch (err) {
    if (isErrno(err, "ENOENT")) return;
    throw err;
  }
  // Keep the parsed usage when nobody else appended in between (the size grew by exactly our line).
  if (!before) return;
  const st = statSync(file, { bigint: true, throwIfNoEntry: false });
  const [ino, size] = before.key.split(":");
  if (st && String(st.ino) === ino && st.size === BigInt(size ?? -1) + BigInt(line.length)) {
    before.key = `${st.ino}:${st.size}:${st.mtimeNs}`;
    before.usage = { bytes: before.usage.bytes + bytes, messages: before.usage.messages + messages };
  } else cache.delete(file);
}

/**
 * Runs `change` — which makes messages appear in or vanish from the account's
 * folders and returns by how much — under the quota lock, and records that in
 * maildirsize before anyone else may scan. The delta is recorded even when
 * `change` fails part way (it reports what it did through `partial`).
 */
export async function withUsage<T>(userRoot: string, change: (partial: Usage) => Promise<T>): Promise<T> {
  return withQuotaLock(userRoot, async () => {
    const delta: Usage = { bytes: 0, messages: 0 };
    try {
      return await change(delta);
    } finally {
      try {
        await appendLine(userRoot, delta.bytes, delta.messages);
      } catch {
        // the file is only bookkeeping: a failed line is fixed by the next recalculation
        await unlink(join(userRoot, QUOTA_FILE)).catch(() => undefined);
      }
    }
  });
}

/** Runs `change` (a folder deleted, renamed) under the quota lock and has the next read recalculate. */
export async function withRecalculation<T>(userRoot: string, change: () => Promise<T>): Promise<T> {
  return withQuotaLock(userRoot, async () => {
    try {
      return await change();
    } finally {
      await unlink(join(userRoot, QUOTA_FILE)).catch(() => undefined);
    }
  });
}
