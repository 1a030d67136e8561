/**
 * Per-account quota in the Maildir++ `maildirsize` file: first line the limit
 * ("<bytes>S"), then "<bytes> <count>" lines appended (O_APPEND, atomic for a
 * short line) on every save and expunge. Usage is the sum. The file is
 * recalculated from the folders when missing, when the limit changed, or when
 * it grew past 5120 bytes (the Maildir++ rule), and written atomically.
 */
import { closeSync, constants, openSync, statSync, writeSync } from "node:fs";
import { readdir, readFile, stat, unlink } from "node:fs/promises";
import { join } from "node:path";
import { parseName } from "./filename.js";
import { isErrno, writeAtomic } from "./fsutil.js";

export const QUOTA_FILE = "maildirsize";
export const QUOTA_FILE_MAX_BYTES = 5120;

export interface Usage {
  bytes: number;
  messages: number;
}

async function scanDir(dir: string, usage: Usage): Promise<void> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if (isErrno(err, "ENOENT")) return;
    throw err;
  }
  for (const name of names) {
    if (name.startsWith(".")) continue;
    const size = parseName(name).size ?? (await stat(join(dir, name)).catch(() => ({ size: 0 }))).size;
    usage.bytes += size;
    usage.messages += 1;
  }
}

/** Usage from the files themselves: every folder's new/ and cur/. */
export async function calculateUsage(userRoot: string): Promise<Usage> {
  const usage: Usage = { bytes: 0, messages: 0 };
  const folders = [userRoot];
  for (const entry of await readdir(userRoot, { withFileTypes: true })) {
    if (entry.isDirectory() && entry.name.startsWith(".") && !entry.name.startsWith("..")) {
      folders.push(join(userRoot, entry.name));
    }
  }
  for (const folder of folders) {
    await scanDir(join(folder, "new"), usage);
    await scanDir(join(folder, "cur"), usage);
  }
  return usage;
}

/** Parsed maildirsize per file version (inode, size, mtime): a stat instead of a read when unchanged. */
const cache = new Map<string, { key: string; limit: number; usage: Usage }>();
const CACHE_MAX = 10_000;

export async function readUsage(userRoot: string, limitBytes: number): Promise<Usage> {
  const file = join(userRoot, QUOTA_FILE);
  const st = statSync(file, { bigint: true, throwIfNoEntry: false });
  const key = st ? `${st.ino}:${st.size}:${st.mtimeNs}` : "";
  const hit = cache.get(file);
  if (key && hit?.key === key && hit.limit === limitBytes) return { ...hit.usage };
  const usage = await readUsageFile(userRoot, limitBytes);
  if (cache.size >= CACHE_MAX) cache.clear();
  if (key) cache.set(file, { key, limit: limitBytes, usage: { ...usage } });
  return usage;
}

async function readUsageFile(userRoot: string, limitBytes: number): Promise<Usage> {
  const file = join(userRoot, QUOTA_FILE);
  let text: string | null = null;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    if (!isErrno(err, "ENOENT")) throw err;
  }
  if (text !== null && text.length <= QUOTA_FILE_MAX_BYTES) {
    const lines = text.split("\n");
    if (lines[0] === `${limitBytes}S`) {
      const usage: Usage = { bytes: 0, messages: 0 };
      let ok = true;
      for (const line of lines.slice(1)) {
        if (line === "") continue;
        const m = /^\s*(-?\d+)\s+(-?\d+)\s*$/.exec(line);
        if (!m) {
          ok = false;
          break;
        }
        usage.bytes += Number(m[1]);
        usage.messages += Number(m[2]);
      }
      if (ok && usage.bytes >= 0 && usage.messages >= 0) return usage;
    }
  }
  const usage = await calculateUsage(userRoot);
  await writeAtomic(
    join(userRoot, `${QUOTA_FILE}.tmp${process.pid}`),
    file,
    userRoot,
    `${limitBytes}S\n${usage.bytes} ${usage.messages}\n`,
    false,
  );
  return usage;
}

export async function addUsage(userRoot: string, bytes: number, messages: number): Promise<void> {
  if (bytes === 0 && messages === 0) return;
  const file = join(userRoot, QUOTA_FILE);
  const line = `${bytes} ${messages}\n`;
  try {
    // O_APPEND without O_CREAT: a missing file is recalculated on the next read instead.
    // Synchronous: a short append to the page cache (not fsynced: recalculable) is cheaper than a round trip.
    const fd = openSync(file, constants.O_WRONLY | constants.O_APPEND);
    try {
      writeSync(fd, line);
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    if (isErrno(err, "ENOENT")) return;
    throw err;
  }
  // Keep the parsed usage when nobody else appended in between (the size grew by exactly our line).
  const hit = cache.get(file);
  if (!hit) return;
  const st = statSync(file, { bigint: true, throwIfNoEntry: false });
  const [ino, size] = hit.key.split(":");
  if (st && String(st.ino) === ino && st.size === BigInt(size ?? -1) + BigInt(line.length)) {
    hit.key = `${st.ino}:${st.size}:${st.mtimeNs}`;
    hit.usage = { bytes: hit.usage.bytes + bytes, messages: hit.usage.messages + messages };
  } else cache.delete(file);
}

/** Forces a recalculation (after deleting a folder). */
export async function invalidateUsage(userRoot: string): Promise<void> {
  await unlink(join(userRoot, QUOTA_FILE)).catch(() => undefined);
}
