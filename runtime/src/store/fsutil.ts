/**
 * Small durable-write helpers for the Maildir backend: rename(2) is atomic but
 * only durable once the directory holding the new name is fsynced.
 */
import {
  close,
  closeSync,
  fdatasync,
  fsync,
  futimesSync,
  open as openCb,
  openSync,
  read,
  writeSync,
} from "node:fs";
import { open, readFile, rename, unlink } from "node:fs/promises";

/*
 * On the delivery path only the fsyncs wait for the disk; open, a small write
 * into the page cache and close are cheaper done synchronously than as
 * thread-pool round trips. Larger writes stay asynchronous.
 */
export const SYNC_WRITE_MAX_BYTES = 256 * 1024;

export function fsyncFd(fd: number, dataOnly = false): Promise<void> {
  return new Promise((resolve, reject) => {
    (dataOnly ? fdatasync : fsync)(fd, (err) => (err ? reject(err) : resolve()));
  });
}

export async function fsyncPath(path: string): Promise<void> {
  const fd = openSync(path, "r");
  try {
    await fsyncFd(fd);
  } finally {
    closeSync(fd);
  }
}

/** Writes a small file (flags "wx", "w", "a" …), optionally fsyncs it. */
export async function writeSmallFile(
  path: string,
  flags: string,
  data: Buffer | string,
  options: { fsync: boolean; dataOnly?: boolean; mtime?: Date },
): Promise<void> {
  const fd = openSync(path, flags, 0o600);
  try {
    const buf = typeof data === "string" ? Buffer.from(data) : data;
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
    if (options.mtime) futimesSync(fd, options.mtime, options.mtime);
    if (options.fsync) await fsyncFd(fd, options.dataOnly);
  } finally {
    closeSync(fd);
  }
}

/**
 * Writes a file of any size through a file handle (flags "w", "wx" …),
 * optionally sets its mtime and fsyncs it; on failure the file is removed.
 */
export async function writeFileHandle(
  path: string,
  flags: string,
  data: Buffer | string,
  options: { fsync: boolean; mtime?: Date },
): Promise<void> {
  const handle = await open(path, flags, 0o600);
  try {
    await handle.writeFile(data);
    if (options.mtime) await handle.utimes(options.mtime, options.mtime);
    if (options.fsync) await handle.sync();
  } catch (err) {
    await handle.close().catch(() => undefined);
    await unlink(path).catch(() => undefined);
    throw err;
  }
  await handle.close();
}

/** Writes `data` to `tmpPath` (fsynced when asked), renames it over `finalPath`, fsyncs its directory. */
export async function writeAtomic(
  tmpPath: string,
  finalPath: string,
  dir: string,
  data: Buffer | string,
  fsync: boolean,
): Promise<void> {
  await writeFileHandle(tmpPath, "w", data, { fsync });
  await rename(tmpPath, finalPath);
  if (fsync) await fsyncPath(dir);
}

/**
 * Reads a file whose size is known (a message: its size is in the index) in
 * two thread-pool round trips — open, one read — where readFile needs four
 * (open, fstat, read, close). Falls back to readFile when the file is bigger.
 */
export function readKnownSize(path: string, size: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    openCb(path, "r", (err, fd) => {
      if (err) return reject(err);
      const buf = Buffer.allocUnsafe(size + 1);
      read(fd, buf, 0, buf.length, 0, (readErr, n) => {
        // close(2) on a regular file we only read does not wait for the disk; nothing to await
        close(fd, () => undefined);
        if (readErr) return reject(readErr);
        if (n <= size) return resolve(buf.subarray(0, n));
        readFile(path).then(resolve, reject);
      });
    });
  });
}

export function isErrno(err: unknown, code: string): boolean {
  return typeof err === "object" && err !== null && (err as NodeJS.ErrnoException).code === code;
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
