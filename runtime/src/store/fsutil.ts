/**
 * Small durable-write helpers for the Maildir backend: rename(2) is atomic but
 * only durable once the directory holding the new name is fsynced.
 */
import { open, rename, unlink } from "node:fs/promises";

export async function fsyncPath(path: string): Promise<void> {
  const handle = await open(path, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Writes `data` to `tmpPath` (fsynced when asked), renames it over `finalPath`, fsyncs its directory. */
export async function writeAtomic(
  tmpPath: string,
  finalPath: string,
  dir: string,
  data: Buffer | string,
  fsync: boolean,
): Promise<void> {
  const handle = await open(tmpPath, "w", 0o600);
  try {
    await handle.writeFile(data);
    if (fsync) await handle.sync();
  } catch (err) {
    await handle.close().catch(() => undefined);
    await unlink(tmpPath).catch(() => undefined);
    throw err;
  }
  await handle.close();
  await rename(tmpPath, finalPath);
  if (fsync) await fsyncPath(dir);
}

export function isErrno(err: unknown, code: string): boolean {
  return typeof err === "object" && err !== null && (err as NodeJS.ErrnoException).code === code;
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
