/**
 * Writes that survive a crash or power loss: data fsynced, renamed into place,
 * and the directory fsynced so the rename itself is on disk (rename(2) is
 * atomic, but only durable once its directory is synced).
 */
import { closeSync, fsync, openSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { type FileHandle, open, rename, unlink } from "node:fs/promises";
import { dirname } from "node:path";

/**
 * One open handle per directory, kept: a directory fsync is then one call to
 * the thread pool instead of open + fsync + close (the MX does one per
 * accepted message under light load). Dropped on error and reopened.
 */
const dirHandles = new Map<string, Promise<FileHandle>>();

async function syncDirNow(dir: string): Promise<void> {
  let handle = dirHandles.get(dir);
  if (!handle) {
    handle = open(dir, "r");
    dirHandles.set(dir, handle);
  }
  try {
    await (await handle).sync();
  } catch (err) {
    if (dirHandles.get(dir) === handle) dirHandles.delete(dir);
    void handle.then((h) => h.close()).catch(() => undefined);
    throw err;
  }
}

interface DirSync {
  running: Promise<void>;
  /** Callers that arrived while `running` was in progress share the next sync. */
  next?: Promise<void>;
}
const dirSyncs = new Map<string, DirSync>();

/**
 * fsync(2) of a directory, with group commit: a caller that arrives while a
 * sync of the same directory is running waits for the next one (which covers
 * its rename), and all such callers share that one. Under load many renames
 * cost one directory sync.
 */
export function fsyncDir(dir: string): Promise<void> {
  const current = dirSyncs.get(dir);
  if (!current) {
    const running = syncDirNow(dir).finally(() => {
      const entry = dirSyncs.get(dir);
      if (entry?.running === running && !entry.next) dirSyncs.delete(dir);
    });
    dirSyncs.set(dir, { running });
    return running;
  }
  if (!current.next) {
    current.next = current.running
      .catch(() => undefined)
      .then(() => {
        const running = syncDirNow(dir);
        dirSyncs.set(dir, { running });
        void running
          .catch(() => undefined)
          .finally(() => {
            if (dirSyncs.get(dir)?.running === running) dirSyncs.delete(dir);
          });
        return running;
      });
  }
  return current.next;
}

/**
 * Up to this size a queue file is created, written, closed and renamed with
 * synchronous calls (page cache and in-memory metadata: microseconds), so
 * only the two syncs that wait for the disk go to the thread pool. Each
 * thread-pool round trip costs an event-loop turn, milliseconds on a loaded
 * host: of five per message (16 ms from DATA's end to 250 under bench/smtp.ts
 * load), the three that do not wait for the disk took half.
 * Larger messages are written asynchronously (the loop is never blocked long).
 */
export const SYNC_WRITE_MAX_BYTES = 256 * 1024;

const fsyncFd = (fd: number) =>
  new Promise<void>((resolve, reject) => fsync(fd, (err) => (err ? reject(err) : resolve())));

/**
 * Writes `data` to `tmpPath`, fsyncs it, renames it to `finalPath` and fsyncs
 * the target directory: the file's data is on disk before its name appears in
 * the final directory, and the name is on disk when this resolves.
 */
export async function writeDurably(tmpPath: string, finalPath: string, data: Buffer | string): Promise<void> {
  const bytes = typeof data === "string" ? Buffer.from(data) : data;
  if (bytes.length > SYNC_WRITE_MAX_BYTES) return writeLarge(tmpPath, finalPath, bytes);
  const fd = openSync(tmpPath, "w", 0o600);
  try {
    for (let off = 0; off < bytes.length; ) off += writeSync(fd, bytes, off, bytes.length - off);
    await fsyncFd(fd);
    // The data is on disk: the name may appear (renaming an open file is fine on POSIX).
    renameSync(tmpPath, finalPath);
  } catch (err) {
    rmQuietly(tmpPath);
    throw err;
  } finally {
    closeQuietly(fd);
  }
  await fsyncDir(dirname(finalPath));
}

/**
 * A NEW file that only readers which check its completeness may see early
 * (the queue's msg/ files: QueueStore.open() removes what a crash left
 * incomplete). Written in full under `tmpPath`, renamed to `finalPath`, then
 * the file and the directory are fsynced together, and this resolves only
 * when both are on disk: the same durability as writeDurably(), with one wait
 * for the disk instead of two in a row (both syncs usually ride one journal
 * commit). Until then a crash may leave `finalPath` empty or short (never
 * acknowledged: the caller has not answered yet); whoever reads it after a
 * restart must check it is whole. A failed sync removes `finalPath` again.
 */
export async function commitNew(tmpPath: string, finalPath: string, data: Buffer): Promise<void> {
  if (data.length > SYNC_WRITE_MAX_BYTES) return commitNewLarge(tmpPath, finalPath, data);
  const fd = openSync(tmpPath, "w", 0o600);
  let renamed = false;
  try {
    for (let off = 0; off < data.length; ) off += writeSync(fd, data, off, data.length - off);
    renameSync(tmpPath, finalPath);
    renamed = true;
    await Promise.all([fsyncFd(fd), fsyncDir(dirname(finalPath))]);
  } catch (err) {
    rmQuietly(renamed ? finalPath : tmpPath);
    throw err;
  } finally {
    closeQuietly(fd);
  }
}

async function commitNewLarge(tmpPath: string, finalPath: string, data: Buffer): Promise<void> {
  const handle = await open(tmpPath, "w", 0o600);
  let renamed = false;
  try {
    await handle.writeFile(data);
    await rename(tmpPath, finalPath);
    renamed = true;
    await Promise.all([handle.sync(), fsyncDir(dirname(finalPath))]);
  } catch (err) {
    await unlink(renamed ? finalPath : tmpPath).catch(() => undefined);
    throw err;
  } finally {
    await handle.close().catch(() => undefined);
  }
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // already closed or never valid: nothing to release
  }
}

function rmQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // not there: nothing to clean
  }
}

async function writeLarge(tmpPath: string, finalPath: string, data: Buffer): Promise<void> {
  const handle = await open(tmpPath, "w", 0o600);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } catch (err) {
    await handle.close().catch(() => undefined);
    await unlink(tmpPath).catch(() => undefined);
    throw err;
  }
  // The data is on disk: close and rename go to the thread pool together.
  const [, renamed] = await Promise.allSettled([handle.close(), rename(tmpPath, finalPath)]);
  if (renamed.status === "rejected") {
    await unlink(tmpPath).catch(() => undefined);
    throw renamed.reason;
  }
  await fsyncDir(dirname(finalPath));
}
