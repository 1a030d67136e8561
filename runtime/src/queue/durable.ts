/**
 * Writes that survive a crash or power loss: data fsynced, renamed into place,
 * and the directory fsynced so the rename itself is on disk (rename(2) is
 * atomic, but only durable once its directory is synced).
 */
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

/** Writes `data` to `tmpPath`, fsyncs it, renames it to `finalPath` and fsyncs the target directory. */
export async function writeDurably(tmpPath: string, finalPath: string, data: Buffer | string): Promise<void> {
  const handle = await open(tmpPath, "w", 0o600);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } catch (err) {
    await handle.close().catch(() => undefined);
    await unlink(tmpPath).catch(() => undefined);
    throw err;
  }
  // The data is on disk: close and rename go to the thread pool together (one
  // round-trip less per message; renaming an open file is fine on POSIX).
  await Promise.all([handle.close(), rename(tmpPath, finalPath)]);
  await fsyncDir(dirname(finalPath));
}
