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
 */
import { createHash } from "node:crypto";

export const INDEX_FILE = "mailinfra-index";
const MAGIC = "mailinfra-index 1";

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
    `${MAGIC} ${data.uidValidity} ${data.uidNext} ${data.highestModseq} ${data.firstRecentUid} ${data.newMtime} ${data.curMtime}`,
  ];
  for (const r of data.records) {
    lines.push(
      `${r.uid} ${r.modseq} ${r.size} ${r.internalDate} ${r.dir === "new" ? "n" : "c"} ${r.letters || "-"} ${r.base}`,
    );
  }
  const body = `${lines.join("\n")}\n`;
  return `${body}end ${createHash("sha256").update(body).digest("hex")}\n`;
}

const INT = /^\d{1,15}$/;

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
  if (head.length !== 8 || `${head[0]} ${head[1]}` !== MAGIC) return null;
  const nums = head.slice(2, 6);
  const mtime = /^\d{1,30}$/;
  if (!nums.every((n) => INT.test(n)) || !mtime.test(head[6] ?? "") || !mtime.test(head[7] ?? ""))
    return null;
  const [uidValidity, uidNext, highestModseq, firstRecentUid] = nums.map(Number) as [
    number,
    number,
    number,
    number,
  ];
  const data: IndexData = {
    uidValidity,
    uidNext,
    highestModseq,
    firstRecentUid,
    newMtime: head[6]!,
    curMtime: head[7]!,
    records: [],
  };
  let lastUid = 0;
  for (let i = 1; i < lines.length; i++) {
    const f = (lines[i] as string).split(" ");
    if (f.length < 7) return null;
    const [uid, modseq, size, date] = f.slice(0, 4).map((v) => (INT.test(v) ? Number(v) : Number.NaN)) as [
      number,
      number,
      number,
      number,
    ];
    if ([uid, modseq, size, date].some(Number.isNaN) || uid <= lastUid || uid >= uidNext) return null;
    if (f[4] !== "n" && f[4] !== "c") return null;
    lastUid = uid;
    data.records.push({
      uid,
      modseq,
      size,
      internalDate: date,
      dir: f[4] === "n" ? "new" : "cur",
      letters: f[5] === "-" ? "" : (f[5] as string),
      base: f.slice(6).join(" "),
    });
  }
  return data;
}
