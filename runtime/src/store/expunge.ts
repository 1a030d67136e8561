/**
 * Removing messages under the mailbox lock: files unlinked, records dropped,
 * one new MODSEQ for the operation (RFC 7162 §3.2 — expunges raise
 * HIGHESTMODSEQ). Not fsynced: an expunge stores no mail (Tx.durable in
 * mailbox.ts); a power cut may bring a message back, never lose one.
 */
import { unlink } from "node:fs/promises";
import { join } from "node:path";
import { curName } from "./filename.js";
import { isErrno } from "./fsutil.js";
import type { Usage } from "./quota.js";
import type { IndexData, IndexRecord } from "./uidlist.js";

export function recordPath(mailboxPath: string, r: IndexRecord): string {
  return join(mailboxPath, r.dir, r.dir === "new" ? r.base : curName(r.base, r.letters));
}

/** Runs the unlinks under the account's quota lock and records what they freed (quota.ts withUsage). */
export type UsageChange = (change: (delta: Usage) => Promise<void>) => Promise<void>;

export async function removeRecords(
  mailboxPath: string,
  data: IndexData,
  shouldRemove: (r: IndexRecord) => boolean,
  withUsage: UsageChange,
): Promise<IndexRecord[]> {
  const removed: IndexRecord[] = [];
  const kept: IndexRecord[] = [];
  for (const r of data.records) (shouldRemove(r) ? removed : kept).push(r);
  if (removed.length === 0) return removed;
  await withUsage(async (delta) => {
    for (const r of removed) {
      try {
        await unlink(recordPath(mailboxPath, r));
      } catch (err) {
        if (!isErrno(err, "ENOENT")) throw err;
        continue; // gone already: whoever removed it accounted for it
      }
      delta.bytes -= r.size;
      delta.messages -= 1;
    }
  });
  data.records = kept;
  data.highestModseq += 1;
  return removed;
}
