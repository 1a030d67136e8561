/**
 * One mailbox directory as this process sees it: the cached index, the
 * in-process mutex plus the cross-process lock file around every index update,
 * group-committed appends, \Recent hand-out and change notification (in-process
 * listeners, and fs.watch on the directory for changes other processes make —
 * LMTP and IMAP are separate services on the store host).
 */
import { closeSync, type FSWatcher, openSync, readSync, renameSync, statSync, watch } from "node:fs";
import { stat, unlink } from "node:fs/promises";
import { join } from "node:path";
import { curName } from "./filename.js";
import { flagsToLetters, KEYWORDS_FILE, readKeywords, writeKeywords } from "./flags.js";
import { fsyncPath, isErrno, readKnownSize, writeAtomic, writeSmallFile } from "./fsutil.js";
import { acquireLock, Mutex } from "./lock.js";
import { type Usage, withRecalculation, withUsage } from "./quota.js";
import type { TmpMessage } from "./save.js";
import { dirMtimes, reconcile } from "./sync.js";
import { StoreError } from "./types.js";
import {
  applyLog,
  applyLogTail,
  INDEX_FILE,
  INDEX_LOG_FILE,
  type IndexData,
  type IndexRecord,
  type LogEntry,
  logLines,
  parseIndex,
  serializeIndex,
} from "./uidlist.js";

export const LOCK_FILE = "mailinfra-index.lock";
/** Index updates hold the lock for milliseconds; one this old belongs to a hung or dead process. */
export const INDEX_LOCK_STALE_MS = 30_000;
export const INDEX_LOCK_TIMEOUT_MS = 15_000;
/** Coalesce bursts of change events into one callback. */
const NOTIFY_DELAY_MS = 15;

export interface MailboxOptions {
  fsync: boolean;
  newUidValidity: () => number;
  /** The account's Maildir++ root, where its maildirsize lives (quota.ts). */
  accountRoot: string;
}

/** An update in progress: mutate `data` / `keywords`, set the dirty flags. */
export interface Tx {
  data: IndexData;
  keywords: string[];
  dirty: boolean;
  keywordsDirty: boolean;
  /**
   * What the update did, entry by entry, when it can be told that way (appends,
   * flag changes, expunges): written to the index log instead of a new index.
   * An update that leaves it unset while dirty rewrites the index.
   */
  log?: LogEntry[];
  /**
   * Directory fsyncs the update started (after its renames or unlinks): run
   * alongside the index write, and both done before update() resolves — two
   * waits for the disk in parallel instead of one after the other.
   */
  syncs?: Promise<void>[];
  /**
   * False for updates that store no mail — flag changes, expunges, \Recent:
   * their log entry is written but not fsynced (Dovecot's mail_fsync =
   * optimized does the same). A power cut may undo such a change (a message
   * comes back, a flag is lost); it never loses mail. Saved mail (appends,
   * copies) is always fsynced, with its new UIDs.
   */
  durable?: boolean;
}

/** The log is folded into a new index once it is this big (readers parse it whole). */
export const MAX_INDEX_LOG_BYTES = 64 * 1024;

export interface PendingAppend extends TmpMessage {
  flags: string[];
}

const byUid = new WeakMap<IndexData, Map<number, IndexRecord>>();

function clone(data: IndexData): IndexData {
  return { ...data, records: data.records.map((r) => ({ ...r })) };
}

export class Mailbox {
  private readonly mutex = new Mutex();
  private cache: {
    key: string;
    baseKey: string;
    data: IndexData;
    /** Bytes of log applied; 0 = no log; -1 = a log of another generation is lying there. */
    logBytes: number;
    torn: boolean;
  } | null = null;
  private keywordCache: { key: string; list: string[] } | null = null;
  private readonly listeners = new Set<() => void>();
  private watcher: FSWatcher | null = null;
  private poller: NodeJS.Timeout | null = null;
  private notifyTimer: NodeJS.Timeout | null = null;
  private pending: Array<{
    item: PendingAppend;
    resolve: (r: { uid: number; uidValidity: number }) => void;
    reject: (e: unknown) => void;
  }> = [];
  private flushing = false;
  refs = 0;

  constructor(
    readonly path: string,
    private readonly options: MailboxOptions,
  ) {}

  /** A record by UID in an index this mailbox returned (a map built once per index version). */
  record(data: IndexData, uid: number): IndexRecord | undefined {
    let map = byUid.get(data);
    if (!map) {
      map = new Map(data.records.map((r) => [r.uid, r]));
      byUid.set(data, map);
    }
    return map.get(uid);
  }

  get idle(): boolean {
    return this.refs === 0 && this.mutex.idle && this.pending.length === 0 && this.listeners.size === 0;
  }

  async exists(): Promise<boolean> {
    try {
      return (await stat(join(this.path, "cur"))).isDirectory();
    } catch (err) {
      if (isErrno(err, "ENOENT") || isErrno(err, "ENOTDIR")) return false;
      throw err;
    }
  }

  /** Synchronous: a stat is cheaper than a thread-pool round trip. */
  private async statKey(file: string): Promise<string | null> {
    const st = statSync(file, { bigint: true, throwIfNoEntry: false });
    return st ? `${st.ino}:${st.mtimeNs}:${st.size}` : null;
  }

  private async readIndex(): Promise<IndexData | null> {
    const file = join(this.path, INDEX_FILE);
    const logFile = join(this.path, INDEX_LOG_FILE);
    const [baseKey, logKey] = await Promise.all([this.statKey(file), this.statKey(logFile)]);
    if (baseKey === null) return null;
    const key = `${baseKey}|${logKey ?? "none"}`;
    if (this.cache?.key === key) return this.cache.data;
    const tail = await this.readLogTail(baseKey, logKey, key);
    if (tail) return tail;
    let text: string;
    let logText: string | null = null;
    // Sizes from the stats just made: two thread-pool round trips per file instead of four.
    const sizeOf = (key: string) => Number(key.split(":")[2]);
    try {
      text = (await readKnownSize(file, sizeOf(baseKey))).toString("utf8");
      if (logKey !== null)
        logText = await readKnownSize(logFile, sizeOf(logKey)).then(
          (b) => b.toString("utf8"),
          () => null,
        );
    } catch (err) {
      if (isErrno(err, "ENOENT")) return null;
      throw err;
    }
    const data = parseIndex(text);
    if (!data) return null;
    let logBytes = 0;
    let torn = false;
    if (logText !== null) {
      const r = applyLog(data, logText);
      logBytes = r.applied ? Buffer.byteLength(logText) : -1;
      torn = r.torn;
    }
    this.cache = { key, baseKey, data, logBytes, torn };
    return data;
  }

  /**
   * The same index file and a longer log of its generation: apply only the new
   * lines (a delivery does not cost every other process a full re-parse).
   */
  private async readLogTail(baseKey: string, logKey: string | null, key: string): Promise<IndexData | null> {
    const c = this.cache;
    if (!c || c.baseKey !== baseKey || logKey === null || c.logBytes <= 0 || c.torn) return null;
    const size = Number(logKey.split(":")[2]);
    if (!(size > c.logBytes)) return null;
    const fd = openSync(join(this.path, INDEX_LOG_FILE), "r");
    let text: string;
    try {
      const buf = Buffer.alloc(size - c.logBytes);
      const n = readSync(fd, buf, 0, buf.length, c.logBytes);
      text = buf.subarray(0, n).toString("utf8");
    } finally {
      closeSync(fd);
    }
    const data: IndexData = { ...c.data, records: [...c.data.records] };
    const { torn } = applyLogTail(data, text);
    this.cache = { key, baseKey, data, logBytes: c.logBytes + Buffer.byteLength(text), torn };
    return data;
  }

  async keywords(): Promise<string[]> {
    let key = "none";
    try {
      const st = await stat(join(this.path, KEYWORDS_FILE), { bigint: true });
      key = `${st.ino}:${st.mtimeNs}:${st.size}`;
    } catch (err) {
      if (!isErrno(err, "ENOENT")) throw err;
    }
    if (this.keywordCache?.key !== key) this.keywordCache = { key, list: await readKeywords(this.path) };
    return this.keywordCache.list;
  }

  private async fresh(data: IndexData | null): Promise<boolean> {
    if (!data) return false;
    const m = await dirMtimes(this.path);
    return m.newMtime === data.newMtime && m.curMtime === data.curMtime;
  }

  /** The current index (read-only: do not mutate). Takes the lock only when the Maildir changed behind it. */
  async current(): Promise<IndexData> {
    let data: IndexData | null;
    try {
      data = await this.readIndex();
      if (data && (await this.fresh(data))) return data;
    } catch (err) {
      if (isErrno(err, "ENOENT") || isErrno(err, "ENOTDIR"))
        throw new StoreError("NONEXISTENT", "mailbox does not exist");
      throw err;
    }
    return this.update(async (tx) => tx.data);
  }

  /** Runs `fn` under the mutex and the lock file on an up-to-date copy of the index; writes it when dirty. */
  update<T>(fn: (tx: Tx) => Promise<T>, options: { keywords?: boolean } = {}): Promise<T> {
    return this.mutex.run(async () => {
      let release: () => Promise<void>;
      try {
        release = await acquireLock(join(this.path, LOCK_FILE), {
          timeoutMs: INDEX_LOCK_TIMEOUT_MS,
          staleMs: INDEX_LOCK_STALE_MS,
          otherHostIsStale: false,
        });
      } catch (err) {
        if (isErrno(err, "ENOENT") || isErrno(err, "ENOTDIR")) {
          throw new StoreError("NONEXISTENT", "mailbox does not exist");
        }
        throw err;
      }
      try {
        let data: IndexData | null;
        let isFresh: boolean;
        try {
          data = await this.readIndex();
          isFresh = await this.fresh(data);
        } catch (err) {
          if (isErrno(err, "ENOENT") || isErrno(err, "ENOTDIR")) {
            throw new StoreError("NONEXISTENT", "mailbox does not exist");
          }
          throw err;
        }
        let dirty = false;
        let reconciled = false;
        if (!isFresh) {
          const r = await reconcile(this.path, data ? clone(data) : null, this.options.newUidValidity);
          data = r.data;
          dirty = r.changed;
          reconciled = r.changed;
        } else {
          data = clone(data as IndexData);
        }
        const state = this.cache;
        // Appends without flags never need the keyword list: save the read.
        const keywords = options.keywords === false ? [] : [...(await this.keywords())];
        const tx: Tx = { data, keywords, dirty, keywordsDirty: false };
        let result: T;
        try {
          result = await fn(tx);
          if (tx.keywordsDirty && options.keywords !== false)
            await writeKeywords(this.path, tx.keywords, this.options.fsync);
        } catch (err) {
          await Promise.allSettled(tx.syncs ?? []);
          throw err;
        }
        const writes = [...(tx.syncs ?? [])];
        if (tx.dirty) {
          const logBytes = state?.data === undefined ? 0 : state.logBytes;
          if (tx.log && !reconciled && state && !state.torn && logBytes < MAX_INDEX_LOG_BYTES) {
            writes.push(this.appendLog(tx.data, tx.log, logBytes, state.baseKey, tx.durable !== false));
          } else {
            writes.push(this.writeIndex(tx.data));
          }
        }
        for (const r of await Promise.allSettled(writes)) if (r.status === "rejected") throw r.reason;
        if (tx.dirty || tx.keywordsDirty) this.scheduleNotify();
        return result;
      } finally {
        await release();
      }
    });
  }

  private async writeIndex(data: IndexData): Promise<void> {
    const m = await dirMtimes(this.path);
    data.newMtime = m.newMtime;
    data.curMtime = m.curMtime;
    data.generation += 1;
    const file = join(this.path, INDEX_FILE);
    await writeAtomic(
      join(this.path, `${INDEX_FILE}.tmp`),
      file,
      this.path,
      serializeIndex(data),
      this.options.fsync,
    );
    // The old log names the old generation: harmless if a crash keeps it, removed now.
    await unlink(join(this.path, INDEX_LOG_FILE)).catch(() => undefined);
    const baseKey = (await this.statKey(file)) as string;
    this.cache = { key: `${baseKey}|none`, baseKey, data, logBytes: 0, torn: false };
  }

  /** Appends to the index log: one write and one fsync (plus the directory's when the log is new). */
  private async appendLog(
    data: IndexData,
    entries: LogEntry[],
    logBytes: number,
    baseKey: string,
    durable: boolean,
  ) {
    const fsync = this.options.fsync && durable;
    const m = await dirMtimes(this.path);
    data.newMtime = m.newMtime;
    data.curMtime = m.curMtime;
    const fresh = logBytes <= 0;
    const text = logLines(data, entries, fresh);
    const logFile = join(this.path, INDEX_LOG_FILE);
    // A log of another generation (-1) is truncated: nobody applies it.
    await writeSmallFile(logFile, fresh ? "w" : "a", text, { fsync, dataOnly: true });
    if (fresh && fsync) await fsyncPath(this.path);
    const logKey = await this.statKey(logFile);
    this.cache = {
      key: `${baseKey}|${logKey ?? "none"}`,
      baseKey,
      data,
      logBytes: (fresh ? 0 : logBytes) + Buffer.byteLength(text),
      torn: false,
    };
  }

  /** Runs a change that adds or removes messages under the account's quota lock, recording the delta. */
  withUsage<T>(change: (delta: Usage) => Promise<T>): Promise<T> {
    return withUsage(this.options.accountRoot, change);
  }

  /** Group commit: appends waiting while an update runs are renamed into place and indexed together. */
  commitAppend(item: PendingAppend): Promise<{ uid: number; uidValidity: number }> {
    return new Promise((resolve, reject) => {
      this.pending.push({ item, resolve, reject });
      if (!this.flushing) void this.flush();
    });
  }

  private async flush(): Promise<void> {
    this.flushing = true;
    try {
      while (this.pending.length > 0) {
        const batch = this.pending.splice(0);
        const outcome = new Map<PendingAppend, number | Error>();
        /** Where each message was renamed to: taken back out if the index cannot record it. */
        const placed: string[] = [];
        let uidValidity = 0;
        try {
          await this.update(
            async (tx) => {
              uidValidity = tx.data.uidValidity;
              const appended: IndexRecord[] = [];
              const dirs = new Set<string>();
              // The renames make the messages count: they and their maildirsize line go together.
              await this.withUsage(async (usage) => {
                for (const { item } of batch) {
                  let letters: string;
                  try {
                    const r = flagsToLetters(item.flags, tx.keywords);
                    letters = r.letters;
                    if (r.added) tx.keywordsDirty = true;
                  } catch (err) {
                    outcome.set(item, err as Error);
                    continue;
                  }
                  const dir = item.flags.length > 0 ? "cur" : "new";
                  const name = dir === "cur" ? curName(item.base, letters) : item.base;
                  renameSync(item.tmpPath, join(this.path, dir, name));
                  dirs.add(dir);
                  const known = tx.data.records.find((r) => r.base === item.base);
                  if (known) {
                    outcome.set(item, known.uid);
                    continue;
                  }
                  placed.push(join(this.path, dir, name));
                  usage.bytes += item.size;
                  usage.messages += 1;
                  const uid = tx.data.uidNext++;
                  tx.data.highestModseq += 1;
                  const record: IndexRecord = {
                    uid,
                    modseq: tx.data.highestModseq,
                    size: item.size,
                    internalDate: item.internalDate,
                    dir,
                    letters: dir === "cur" ? letters : "",
                    base: item.base,
                  };
                  tx.data.records.push(record);
                  appended.push(record);
                  outcome.set(item, uid);
                  tx.dirty = true;
                }
              });
              tx.log = appended.map((record) => ({ type: "A", record }));
              if (this.options.fsync) tx.syncs = [...dirs].map((dir) => fsyncPath(join(this.path, dir)));
            },
            { keywords: batch.some(({ item }) => item.flags.length > 0) },
          );
          for (const { item, resolve, reject } of batch) {
            const r = outcome.get(item);
            if (typeof r === "number") resolve({ uid: r, uidValidity });
            else {
              await unlink(item.tmpPath).catch(() => undefined);
              reject(r ?? new StoreError("TEMPFAIL", "append not committed"));
            }
          }
        } catch (err) {
          // Nobody was told "saved": a message renamed into new/ or cur/ but not in the
          // index would be found by the next sync and delivered twice once the sender
          // retries (LMTP 451). Out it goes, and maildirsize is recounted without it.
          if (placed.length > 0)
            await withRecalculation(this.options.accountRoot, async () => {
              for (const file of placed) await unlink(file).catch(() => undefined);
            }).catch(() => undefined);
          for (const { item, reject } of batch) {
            if (!outcome.has(item)) await unlink(item.tmpPath).catch(() => undefined);
            reject(err);
          }
        }
      }
    } finally {
      this.flushing = false;
    }
  }

  /** Hands the not-yet-recent UIDs to one session (RFC 3501 §2.3.2) and moves them from new/ to cur/. */
  async claimRecent(): Promise<number[]> {
    const data = await this.current();
    if (data.firstRecentUid >= data.uidNext) return [];
    return this.update(async (tx) => {
      const claimed: number[] = [];
      const log: LogEntry[] = [];
      for (const r of tx.data.records) {
        if (r.uid < tx.data.firstRecentUid) continue;
        claimed.push(r.uid);
        if (r.dir === "new") {
          try {
            renameSync(join(this.path, "new", r.base), join(this.path, "cur", curName(r.base, r.letters)));
            r.dir = "cur";
            log.push({ type: "F", record: { ...r } });
          } catch (err) {
            if (!isErrno(err, "ENOENT")) throw err;
          }
        }
      }
      tx.log = log;
      tx.durable = false;
      if (tx.data.firstRecentUid < tx.data.uidNext) {
        tx.data.firstRecentUid = tx.data.uidNext;
        tx.dirty = true;
      }
      return claimed;
    });
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    if (!this.watcher && !this.poller) this.startWatching();
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) this.stopWatching();
    };
  }

  private startWatching(): void {
    try {
      this.watcher = watch(this.path, { persistent: false }, (_event, filename) => {
        if (filename === null || filename === INDEX_FILE || filename === INDEX_LOG_FILE)
          this.scheduleNotify();
      });
      this.watcher.on("error", () => {
        this.stopWatching();
        if (this.listeners.size > 0) this.startPolling();
      });
    } catch {
      this.startPolling();
    }
  }

  /** Fallback when inotify is unavailable (limits, some network file systems). */
  private startPolling(): void {
    let last = "";
    this.poller = setInterval(() => {
      Promise.all([this.statKey(join(this.path, INDEX_FILE)), this.statKey(join(this.path, INDEX_LOG_FILE))])
        .then(([base, log]) => {
          const key = `${base}|${log}`;
          if (last && key !== last) this.scheduleNotify();
          last = key;
        })
        .catch(() => undefined);
    }, 1000);
    this.poller.unref();
  }

  private stopWatching(): void {
    this.watcher?.close();
    this.watcher = null;
    if (this.poller) clearInterval(this.poller);
    this.poller = null;
  }

  private scheduleNotify(): void {
    if (this.notifyTimer || this.listeners.size === 0) return;
    this.notifyTimer = setTimeout(() => {
      this.notifyTimer = null;
      for (const listener of [...this.listeners]) {
        try {
          listener();
        } catch {
          // a listener's failure is its own business
        }
      }
    }, NOTIFY_DELAY_MS);
    this.notifyTimer.unref();
  }

  close(): void {
    this.stopWatching();
    if (this.notifyTimer) clearTimeout(this.notifyTimer);
    this.notifyTimer = null;
    this.listeners.clear();
  }
}
