/**
 * Writes that survive a crash or power loss: data fsynced, renamed into place,
 * and the directory fsynced so the rename itself is on disk (rename(2) is
 * atomic, but only durable once its directory is synced).
 */
import { open, rename, unlink } from "node:fs/promises";
import { dirname } from "node:path";

export async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
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
  await handle.close();
  await rename(tmpPath, finalPath);
  await fsyncDir(dirname(finalPath));
}
