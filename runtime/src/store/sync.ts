/**
 * Reconciling the index with what is really in new/ and cur/: files the index
 * does not know get the next UIDs (in delivery order), files gone from disk are
 * dropped, flags changed behind our back are picked up with a new MODSEQ.
 * Runs under the mailbox lock, only when the directories' mtimes differ from
 * those the index recorded (or the index is missing/damaged).
 */
import { statSync } from "node:fs";
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { type ParsedName, parseName } from "./filename.js";
import { isErrno } from "./fsutil.js";
import { toCrlf } from "./save.js";
import { emptyIndex, type IndexData, type IndexRecord } from "./uidlist.js";

interface Found {
  dir: "new" | "cur";
  name: string;
  parsed: ParsedName;
}

// Skip names that cannot be index lines or are half-written leftovers of other tools.
const BAD_NAME = /[\s\u0000-\u001f\u007f]|^\./;

export async function dirMtimes(path: string): Promise<{ newMtime: string; curMtime: string }> {
  // Synchronous: two stats cost less than two thread-pool round trips.
  const n = statSync(join(path, "new"), { bigint: true });
  const c = statSync(join(path, "cur"), { bigint: true });
  return { newMtime: n.mtimeNs.toString(), curMtime: c.mtimeNs.toString() };
}

async function scan(path: string): Promise<Map<string, Found>> {
  const found = new Map<string, Found>();
  for (const dir of ["new", "cur"] as const) {
    let names: string[];
    try {
      names = await readdir(join(path, dir));
    } catch (err) {
      if (isErrno(err, "ENOENT")) continue;
      throw err;
    }
    for (const name of names) {
      if (BAD_NAME.test(name)) continue;
      const parsed = parseName(name);
      // A crash between link and unlink can leave one message in both: cur/ wins.
      if (dir === "new" || !found.has(parsed.base) || found.get(parsed.base)?.dir === "new") {
        found.set(parsed.base, { dir, name, parsed });
      }
    }
  }
  return found;
}

/**
 * Brings `data` (null = missing or damaged index) in line with the Maildir.
 * Mutates and returns the index; `changed` tells the caller to write it.
 */
export async function reconcile(
  path: string,
  data: IndexData | null,
  newUidValidity: () => number,
): Promise<{ data: IndexData; changed: boolean }> {
  const mtimes = await dirMtimes(path);
  const found = await scan(path);
  const index = data ?? emptyIndex(newUidValidity());
  let changed = data === null;
  let modseq = index.highestModseq;
  const bump = () => {
    if (modseq === index.highestModseq) modseq += 1;
    return modseq;
  };
  const kept: IndexRecord[] = [];
  for (const record of index.records) {
    const file = found.get(record.base);
    if (!file) {
      changed = true;
      bump();
      continue;
    }
    found.delete(record.base);
    if (file.dir !== record.dir) {
      record.dir = file.dir;
      changed = true;
    }
    if (file.dir === "cur" && file.parsed.letters !== record.letters) {
      record.letters = file.parsed.letters;
      record.modseq = bump();
      changed = true;
    }
    kept.push(record);
  }
  const fresh: Array<Found & { mtime: number; size: number }> = [];
  for (const file of found.values()) {
    try {
      const full = join(path, file.dir, file.name);
      const st = await stat(full);
      // No size in the name (a foreign MDA's file): measure it as it will be served, CRLF.
      const size = file.parsed.size ?? toCrlf(await readFile(full)).length;
      fresh.push({ ...file, mtime: st.mtimeMs, size });
    } catch (err) {
      if (!isErrno(err, "ENOENT")) throw err;
    }
  }
  fresh.sort((a, b) => a.mtime - b.mtime || (a.name < b.name ? -1 : 1));
  for (const file of fresh) {
    kept.push({
      uid: index.uidNext++,
      modseq: bump(),
      size: file.size,
      internalDate: Math.floor(file.mtime),
      dir: file.dir,
      letters: file.dir === "cur" ? file.parsed.letters : "",
      base: file.parsed.base,
    });
    changed = true;
  }
  index.records = kept;
  index.highestModseq = modseq;
  if (index.newMtime !== mtimes.newMtime || index.curMtime !== mtimes.curMtime) changed = true;
  index.newMtime = mtimes.newMtime;
  index.curMtime = mtimes.curMtime;
  return { data: index, changed };
}
