/**
 * Saving a new message: written to tmp/ under a unique name, its mtime set to
 * the internal date, fsynced; the caller renames it into new/ or cur/ under
 * the mailbox lock and fsyncs that directory before anyone hears "saved".
 */
import { copyFile, link, unlink, utimes } from "node:fs/promises";
import { join } from "node:path";
import { baseName, uniqueName } from "./filename.js";
import { fsyncPath, isErrno, SYNC_WRITE_MAX_BYTES, writeFileHandle, writeSmallFile } from "./fsutil.js";

export interface TmpMessage {
  tmpPath: string;
  base: string;
  size: number;
  internalDate: number;
}

/** RFC 5322 §2.3: lines end in CRLF. Bare LF becomes CRLF so sizes are RFC 822 sizes. */
export function toCrlf(content: Buffer): Buffer {
  let bare = false;
  for (let i = content.indexOf(10); i >= 0; i = content.indexOf(10, i + 1)) {
    if (i === 0 || content[i - 1] !== 13) {
      bare = true;
      break;
    }
  }
  if (!bare) return content;
  const text = content.toString("latin1").replace(/\r?\n/g, "\r\n");
  return Buffer.from(text, "latin1");
}

export async function writeTmp(
  mailboxPath: string,
  content: Buffer,
  internalDate: Date | undefined,
  fsync: boolean,
): Promise<TmpMessage> {
  const now = Date.now();
  const base = baseName(uniqueName(), content.length);
  const tmpPath = join(mailboxPath, "tmp", base);
  if (content.length <= SYNC_WRITE_MAX_BYTES) {
    try {
      await writeSmallFile(tmpPath, "wx", content, {
        fsync,
        ...(internalDate ? { mtime: internalDate } : {}),
      });
    } catch (err) {
      await unlink(tmpPath).catch(() => undefined);
      throw err;
    }
    return { tmpPath, base, size: content.length, internalDate: internalDate?.getTime() ?? now };
  }
  // The file's mtime is the internal date (what a rebuild reads back); "now" needs no call.
  await writeFileHandle(tmpPath, "wx", content, { fsync, ...(internalDate ? { mtime: internalDate } : {}) });
  return { tmpPath, base, size: content.length, internalDate: internalDate?.getTime() ?? now };
}

/** COPY: a hard link to the same file under a new name in the target's tmp/ (a copy where links fail). */
export async function linkTmp(
  sourceFile: string,
  targetMailboxPath: string,
  size: number,
  internalDate: number,
  fsync: boolean,
): Promise<TmpMessage> {
  const base = baseName(uniqueName(), size);
  const tmpPath = join(targetMailboxPath, "tmp", base);
  try {
    await link(sourceFile, tmpPath);
  } catch (err) {
    if (!isErrno(err, "EPERM") && !isErrno(err, "EXDEV") && !isErrno(err, "EMLINK")) throw err;
    await copyFile(sourceFile, tmpPath);
    await utimes(tmpPath, new Date(internalDate), new Date(internalDate));
    if (fsync) await fsyncPath(tmpPath);
  }
  return { tmpPath, base, size, internalDate };
}
