/**
 * A selected mailbox as one session sees it: a snapshot in sequence order that
 * moves only when the session calls sync() (so sequence numbers stay put
 * between commands, RFC 3501 §7.4.1), plus the operations on it.
 *
 * The session's own setFlags/expunge/move update its snapshot at once: their
 * results are what the protocol reports, and a later sync() does not report
 * them again. sync() reports what other sessions and deliveries did.
 */
import { renameSync } from "node:fs";
import { join } from "node:path";
import { recordPath, removeRecords } from "./expunge.js";
import { curName, guidOf } from "./filename.js";
import { flagsToLetters, lettersToFlags } from "./flags.js";
import { isErrno, readKnownSize } from "./fsutil.js";
import type { Mailbox } from "./mailbox.js";
import { toCrlf } from "./save.js";
import {
  type CopyResult,
  type Flag,
  type FlagOperation,
  type MailboxChanges,
  type MailboxSession,
  type MessageMeta,
  StoreError,
  type StoreFlagsResult,
} from "./types.js";
import type { IndexData, IndexRecord, LogEntry } from "./uidlist.js";

export interface SessionHooks {
  /** Copies records into another mailbox of the same user; returns their new UIDs. */
  copyInto(source: Mailbox, records: IndexRecord[], target: string): Promise<CopyResult & { uids: number[] }>;
  release(mailbox: Mailbox): void;
}

export function toMeta(r: IndexRecord, keywords: readonly string[]): MessageMeta {
  return {
    uid: r.uid,
    flags: lettersToFlags(r.letters, keywords),
    modseq: r.modseq,
    size: r.size,
    internalDate: new Date(r.internalDate),
    guid: guidOf(r.base),
  };
}

function sameFlags(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  if (a.size !== b.size) return false;
  for (const f of a) if (!b.has(f)) return false;
  return true;
}

export class MaildirSession implements MailboxSession {
  private snapshot: MessageMeta[] = [];
  private byUid = new Map<number, number>();
  private recentUids = new Set<number>();
  private modseq = 0;
  private next = 1;
  private closed = false;
  private readonly unsubscribers = new Set<() => void>();

  constructor(
    readonly name: string,
    readonly uidValidity: number,
    readonly readOnly: boolean,
    private readonly mailbox: Mailbox,
    private readonly hooks: SessionHooks,
  ) {}

  /** First snapshot (called once by openMailbox). */
  async init(data: IndexData): Promise<void> {
    const keywords = await this.mailbox.keywords();
    this.snapshot = data.records.map((r) => toMeta(r, keywords));
    this.reindex();
    this.modseq = data.highestModseq;
    this.next = data.uidNext;
    if (!this.readOnly) for (const uid of await this.mailbox.claimRecent()) this.recentUids.add(uid);
  }

  private reindex(): void {
    this.byUid = new Map(this.snapshot.map((m, i) => [m.uid, i]));
  }

  private check(): void {
    if (this.closed) throw new StoreError("NONEXISTENT", "mailbox session is closed");
  }

  messages(): readonly MessageMeta[] {
    return this.snapshot;
  }
  recent(): ReadonlySet<number> {
    return this.recentUids;
  }
  highestModseq(): number {
    return this.modseq;
  }
  uidNext(): number {
    return this.next;
  }

  async sync(): Promise<MailboxChanges> {
    this.check();
    let data = await this.mailbox.current();
    if (!this.readOnly && data.firstRecentUid < data.uidNext) {
      for (const uid of await this.mailbox.claimRecent()) this.recentUids.add(uid);
      data = await this.mailbox.current();
    }
    if (data.uidValidity !== this.uidValidity) {
      // The index was rebuilt: every UID this session knows is void.
      throw new StoreError("NONEXISTENT", "mailbox was rebuilt (UIDVALIDITY changed); reselect it");
    }
    const keywords = await this.mailbox.keywords();
    const changes: MailboxChanges = { added: [], expunged: [], flagsChanged: [] };
    const live = new Set<number>();
    const next: MessageMeta[] = [];
    for (const r of data.records) {
      live.add(r.uid);
      const i = this.byUid.get(r.uid);
      const old = i === undefined ? undefined : this.snapshot[i];
      if (!old) {
        const meta = toMeta(r, keywords);
        changes.added.push(meta);
        next.push(meta);
      } else if (old.modseq !== r.modseq) {
        const meta = toMeta(r, keywords);
        if (!sameFlags(old.flags, meta.flags)) changes.flagsChanged.push(meta);
        next.push(meta);
      } else next.push(old);
    }
    for (const m of this.snapshot) if (!live.has(m.uid)) changes.expunged.push(m.uid);
    for (const uid of changes.expunged) this.recentUids.delete(uid);
    this.snapshot = next;
    this.reindex();
    this.modseq = data.highestModseq;
    this.next = data.uidNext;
    return changes;
  }

  async read(uid: number): Promise<Buffer> {
    this.check();
    for (let attempt = 0; attempt < 3; attempt++) {
      const data = await this.mailbox.current();
      const r = this.mailbox.record(data, uid);
      if (!r) break;
      try {
        // Files written by other MDAs (Dovecot, procmail) may have bare LF line endings.
        return toCrlf(await readKnownSize(recordPath(this.mailbox.path, r), r.size));
      } catch (err) {
        // Renamed by a flag change in another process since our index read: look again.
        if (!isErrno(err, "ENOENT")) throw new StoreError("TEMPFAIL", "cannot read message");
      }
    }
    throw new StoreError("EXPUNGED", "message has been expunged");
  }

  private writable(): void {
    if (this.readOnly) throw new StoreError("NOPERM", "mailbox is read-only");
  }

  async setFlags(
    uids: number[],
    op: FlagOperation,
    flags: Flag[],
    options?: { unchangedSince?: number },
  ): Promise<StoreFlagsResult> {
    this.check();
    this.writable();
    const wanted = new Set(uids);
    const result = await this.mailbox.update(async (tx) => {
      const probe = [...tx.keywords];
      const { letters: opLetters, added } = flagsToLetters(flags, probe);
      if (added) {
        tx.keywords = probe;
        tx.keywordsDirty = true;
      }
      const changed: IndexRecord[] = [];
      const modified: number[] = [];
      const log: LogEntry[] = [];
      const modseq = tx.data.highestModseq + 1;
      for (const r of tx.data.records) {
        if (!wanted.has(r.uid)) continue;
        if (options?.unchangedSince !== undefined && r.modseq > options.unchangedSince) {
          modified.push(r.uid);
          continue;
        }
        let letters: string;
        if (op === "replace") letters = opLetters;
        else if (op === "add") letters = [...new Set(r.letters + opLetters)].sort().join("");
        else letters = [...r.letters].filter((c) => !opLetters.includes(c)).join("");
        if (letters === r.letters && r.dir === "cur") continue;
        const from = recordPath(this.mailbox.path, r);
        renameSync(from, join(this.mailbox.path, "cur", curName(r.base, letters)));
        const flagsDiffer = letters !== r.letters;
        r.dir = "cur";
        r.letters = letters;
        tx.dirty = true;
        if (flagsDiffer) {
          r.modseq = modseq;
          changed.push({ ...r });
        }
        log.push({ type: "F", record: { ...r } });
      }
      tx.log = log;
      tx.durable = false; // flags are not mail (Tx.durable)
      if (changed.length > 0) tx.data.highestModseq = modseq;
      return { changed, modified, keywords: tx.keywords, highest: tx.data.highestModseq };
    });
    const metas = result.changed.map((r) => toMeta(r, result.keywords));
    for (const meta of metas) {
      const i = this.byUid.get(meta.uid);
      if (i !== undefined) this.snapshot[i] = meta;
    }
    return { changed: metas.filter((m) => this.byUid.has(m.uid)), modified: result.modified };
  }

  private async records(uids: number[]): Promise<IndexRecord[]> {
    const data = await this.mailbox.current();
    const wanted = new Set(uids);
    return data.records.filter((r) => wanted.has(r.uid));
  }

  async copy(uids: number[], target: string): Promise<CopyResult> {
    this.check();
    const records = await this.records(uids);
    const r = await this.hooks.copyInto(this.mailbox, records, target);
    return { uidValidity: r.uidValidity, mapping: r.mapping };
  }

  async move(uids: number[], target: string): Promise<CopyResult> {
    this.check();
    this.writable();
    const result = await this.copy(uids, target);
    const moved = new Set(result.mapping.map(([src]) => src));
    await this.remove((r) => moved.has(r.uid));
    return result;
  }

  async expunge(uids?: number[]): Promise<number[]> {
    this.check();
    this.writable();
    const only = uids ? new Set(uids) : null;
    // Only messages this session knows: a message delivered since its last sync cannot be \Deleted by it.
    return this.remove((r) => r.letters.includes("T") && this.byUid.has(r.uid) && (!only || only.has(r.uid)));
  }

  private async remove(pick: (r: IndexRecord) => boolean): Promise<number[]> {
    const removed = await this.mailbox.update(async (tx) => {
      // An expunge stores no mail: not fsynced (Tx.durable).
      tx.durable = false;
      const out = await removeRecords(this.mailbox.path, tx.data, pick, (change) =>
        this.mailbox.withUsage(change),
      );
      if (out.length > 0) tx.dirty = true;
      tx.log = out.map((r) => ({ type: "X", uid: r.uid }));
      return out;
    });
    if (removed.length === 0) return [];
    const gone = new Set(removed.map((r) => r.uid));
    this.snapshot = this.snapshot.filter((m) => !gone.has(m.uid));
    for (const uid of gone) this.recentUids.delete(uid);
    this.reindex();
    return removed.map((r) => r.uid).sort((a, b) => a - b);
  }

  onChange(listener: () => void): () => void {
    const off = this.mailbox.onChange(listener);
    this.unsubscribers.add(off);
    return () => {
      off();
      this.unsubscribers.delete(off);
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const off of this.unsubscribers) off();
    this.unsubscribers.clear();
    this.hooks.release(this.mailbox);
  }
}
