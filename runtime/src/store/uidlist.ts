/**
 * The per-mailbox index (`mailinfra-index`): UIDVALIDITY, UIDNEXT,
 * HIGHESTMODSEQ, the first UID not yet \Recent to anyone, the new/ and cur/
 * mtimes it was taken at, and one line per message:
 *
 *   mailinfra-index 1 <uidvalidity> <uidnext> <highestmodseq> <firstrecent> <newmtime> <curmtime>
 *   <uid> <modseq> <size> <internaldate ms> <n|c> <flag letters or -> <base name>
 *   …
 *   end <sha256 of everything above, hex>
 *
 * Written whole to a temp file, fsynced, renamed into place and the directory
 * fsynced, so a reader sees the old or the new index and never a mix. A file
 * that fails the checksum or the grammar is "damaged": the mailbox is rebuilt
 * from the Maildir with a new UIDVALIDITY (RFC 3501 §2.3.1.1).
 *
 * Deliveries, the hot path, do not rewrite it: they append to
 * `mailinfra-index.log` (one fsync, no rename) lines of the form
 *
 *   G <generation>                                  (first line)
 *   A <uid> <modseq> <size> <date> <n|c> <letters> <base> #<check>   appended
 *   F <uid> <modseq> <size> <date> <n|c> <letters> <base> #<check>   flags/place changed
 *   X <uid> #<check>                                                  expunged
 *   H <uidnext> <highestmodseq> <firstrecent> <newmtime> <curmtime> #<check>
 *
 * Each update writes its A/F/X lines and then one H line; a group counts only
 * once its H line is there.
 *
 * The log applies only to the index of the same generation; any other update
 * writes a new index (next generation) and removes the log. A torn last line
 * (power loss mid-append, before the delivery was acknowledged) fails its
 * check and is ignored; the next writer compacts.
 */
import { createHash } from "node:crypto";

export const INDEX_FILE = "mailinfra-index";
export const INDEX_LOG_FILE = "mailinfra-index.log";
const MAGIC = "mailinfra-index 2";

export interface IndexRecord {
  uid: number;
  modseq: number;
  size: number;
  internalDate: number;
  dir: "new" | "cur";
  letters: string;
  base: string;
}

export interface IndexData {
  /** Which log extends this index. */
  generation: number;
  uidValidity: number;
  uidNext: number;
  highestModseq: number;
  firstRecentUid: number;
  newMtime: string;
  curMtime: string;
  /** Ascending by UID. */
  records: IndexRecord[];
}

export function emptyIndex(uidValidity: number): IndexData {
  return {
    generation: 1,
    uidValidity,
    uidNext: 1,
    highestModseq: 1,
    firstRecentUid: 1,
    newMtime: "0",
    curMtime: "0",
    records: [],
  };
}

export function serializeIndex(data: IndexData): string {
  const lines = [
    `${MAGIC} ${data.generation} ${data.uidValidity} ${data.uidNext} ${data.highestModseq} ${data.firstRecentUid} ${data.newMtime} ${data.curMtime}`,
  ];
  for (const r of data.records) lines.push(recordLine(r));
  const body = `${lines.join("\n")}\n`;
  return `${body}end ${createHash("sha256").update(body).digest("hex")}\n`;
}

function recordLine(r: IndexRecord): string {
  return `${r.uid} ${r.modseq} ${r.size} ${r.internalDate} ${r.dir === "new" ? "n" : "c"} ${r.letters || "-"} ${r.base}`;
}

const INT = /^\d{1,15}$/;

function parseRecord(f: string[]): IndexRecord | null {
  if (f.length < 7) return null;
  const [uid, modseq, size, date] = f.slice(0, 4).map((v) => (INT.test(v) ? Number(v) : Number.NaN)) as [
    number,
    number,
    number,
    number,
  ];
  if ([uid, modseq, size, date].some(Number.isNaN)) return null;
  if (f[4] !== "n" && f[4] !== "c") return null;
  return {
    uid,
    modseq,
    size,
    internalDate: date,
    dir: f[4] === "n" ? "new" : "cur",
    letters: f[5] === "-" ? "" : (f[5] as string),
    base: f.slice(6).join(" "),
  };
}

const check = (line: string) => createHash("sha1").update(line).digest("hex").slice(0, 8);

export type LogEntry = { type: "A" | "F"; record: IndexRecord } | { type: "X"; uid: number };

/** The log lines of one update plus the new header values. */
export function logLines(data: IndexData, entries: LogEntry[], withGeneration: boolean): string {
  const lines = entries.map((e) => (e.type === "X" ? `X ${e.uid}` : `${e.type} ${recordLine(e.record)}`));
  lines.push(
    `H ${data.uidNext} ${data.highestModseq} ${data.firstRecentUid} ${data.newMtime} ${data.curMtime}`,
  );
  const body = lines.map((l) => `${l} #${check(l)}\n`).join("");
  return withGeneration ? `G ${data.generation}\n${body}` : body;
}

/**
 * Applies a log to the index it extends (mutating it). Returns false when the
 * log belongs to another generation (ignored); `torn` when a line failed its
 * check or does not fit (the rest is ignored; the next writer compacts).
 */
export function applyLog(data: IndexData, text: string): { applied: boolean; torn: boolean } {
  const lines = text.split("\n");
  const last = lines.pop(); // "" after a final "\n"; anything else is a torn line
  if (lines[0] !== `G ${data.generation}`) return { applied: false, torn: false };
  const torn = applyLines(data, lines.slice(1));
  return { applied: true, torn: torn || last !== "" };
}

/** Applies lines appended to a log already applied up to a line boundary. */
export function applyLogTail(data: IndexData, text: string): { torn: boolean } {
  const lines = text.split("\n");
  const last = lines.pop();
  return { torn: applyLines(data, lines) || last !== "" };
}

/** Returns true when it had to stop at a bad line. */
function applyLines(data: IndexData, lines: string[]): boolean {
  const mtime = /^\d{1,30}$/;
  let position: Map<number, number> | null = null; // built on the first F or X
  const removed = new Set<number>();
  let pending: LogEntry[] = [];
  let lastUid = data.records.at(-1)?.uid ?? 0;
  let torn = false;
  const apply = (e: LogEntry): boolean => {
    if (e.type === "A") {
      if (e.record.uid <= lastUid) return false;
      lastUid = e.record.uid;
      position?.set(e.record.uid, data.records.length);
      data.records.push(e.record);
      return true;
    }
    if (!position) position = new Map(data.records.map((r, i) => [r.uid, i]));
    const uid = e.type === "X" ? e.uid : e.record.uid;
    const i = position.get(uid);
    if (i === undefined || removed.has(uid)) return false;
    if (e.type === "X") removed.add(uid);
    else data.records[i] = e.record;
    return true;
  };
  for (const raw of lines) {
    const hash = raw.lastIndexOf(" #");
    const line = raw.slice(0, hash);
    if (hash < 0 || check(line) !== raw.slice(hash + 2)) {
      torn = true;
      break;
    }
    const f = line.split(" ");
    if (f[0] === "A" || f[0] === "F") {
      const r = parseRecord(f.slice(1));
      if (!r) {
        torn = true;
        break;
      }
      pending.push({ type: f[0], record: r });
    } else if (f[0] === "X" && f.length === 2 && INT.test(f[1] as string)) {
      pending.push({ type: "X", uid: Number(f[1]) });
    } else if (f[0] === "H" && f.length === 6 && f.slice(1, 4).every((v) => INT.test(v))) {
      if (!mtime.test(f[4] as string) || !mtime.test(f[5] as string) || !pending.every(apply)) {
        torn = true;
        break;
      }
      pending = [];
      data.uidNext = Math.max(Number(f[1]), lastUid + 1);
      data.highestModseq = Number(f[2]);
      data.firstRecentUid = Number(f[3]);
      data.newMtime = f[4] as string;
      data.curMtime = f[5] as string;
    } else {
      torn = true;
      break;
    }
  }
  if (pending.length > 0) torn = true;
  if (removed.size > 0) data.records = data.records.filter((r) => !removed.has(r.uid));
  return torn;
}

/** null = damaged (bad checksum or grammar). */
export function parseIndex(text: string): IndexData | null {
  const endAt = text.lastIndexOf("end ");
  if (endAt < 0 || !text.endsWith("\n")) return null;
  const body = text.slice(0, endAt);
  const sum = text.slice(endAt + 4, -1);
  if (createHash("sha256").update(body).digest("hex") !== sum) return null;
  const lines = body.split("\n");
  lines.pop(); // the empty string after the last "\n"
  const head = lines[0]?.split(" ") ?? [];
  if (head.length !== 9 || `${head[0]} ${head[1]}` !== MAGIC) return null;
  const nums = head.slice(2, 7);
  const mtime = /^\d{1,30}$/;
  if (!nums.every((n) => INT.test(n)) || !mtime.test(head[7] ?? "") || !mtime.test(head[8] ?? "")) {
    return null;
  }
  const [generation, uidValidity, uidNext, highestModseq, firstRecentUid] = nums.map(Number) as [
    number,
    number,
    number,
    number,
    number,
  ];
  const data: IndexData = {
    generation,
    uidValidity,
    uidNext,
    highestModseq,
    firstRecentUid,
    newMtime: head[7]!,
    curMtime: head[8]!,
    records: [],
  };
  let lastUid = 0;
  for (let i = 1; i < lines.length; i++) {
    const r = parseRecord((lines[i] as string).split(" "));
    if (!r || r.uid <= lastUid || r.uid >= uidNext) return null;
    lastUid = r.uid;
    data.records.push(r);
  }
  return data;
}
