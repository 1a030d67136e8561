/**
 * One account's Maildir++ tree: INBOX is the Maildir at `<root>/<user>`,
 * folders are `.Name` beside its cur/new/tmp (names.ts), each with a
 * `maildirfolder` marker; `subscriptions` lists subscribed names (UTF-8, "/"
 * delimited, one per line); `maildirsize` keeps the quota (quota.ts).
 */
import { randomBytes } from "node:crypto";
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { recordPath } from "./expunge.js";
import { curName } from "./filename.js";
import { flagsToLetters, lettersToFlags } from "./flags.js";
import { fsyncPath, isErrno, writeAtomic } from "./fsutil.js";
import { acquireLock } from "./lock.js";
import type { Mailbox } from "./mailbox.js";
import { decodeFolderDir, folderDirName, normalizeName, parentsOf } from "./names.js";
import { readUsage, withRecalculation, withUsage } from "./quota.js";
import { linkTmp, toCrlf, writeTmp } from "./save.js";
import { MaildirSession, type SessionHooks } from "./session.js";
import {
  type AppendOptions,
  type AppendResult,
  type CopyResult,
  type MailboxInfo,
  type MailboxSession,
  type MailboxStatus,
  type QuotaInfo,
  StoreError,
  type UserStore,
} from "./types.js";
import { emptyIndex, INDEX_FILE, type IndexRecord, serializeIndex } from "./uidlist.js";

export const SUBSCRIPTIONS_FILE = "subscriptions";
export const SPECIAL_USE_FILE = "mailinfra-special-use";
export const MAILDROP_LOCK_FILE = "mailinfra-pop3.lock";
/** RFC 6154 §2. */
export const SPECIAL_USES = ["\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash"];

export interface UserStoreDeps {
  fsync: boolean;
  quotaBytes: number;
  /** The shared Mailbox object for a folder path of the account whose Maildir++ root is `accountRoot`. */
  acquire(path: string, accountRoot: string): Mailbox;
  release(mailbox: Mailbox): void;
}

/** Creates cur/ new/ tmp/ (and the folder marker for non-INBOX folders). */
export async function makeMaildir(path: string, folder: boolean): Promise<void> {
  await mkdir(path, { recursive: true, mode: 0o700 });
  for (const sub of ["tmp", "new", "cur"]) await mkdir(join(path, sub), { recursive: true, mode: 0o700 });
  if (folder) await writeFile(join(path, "maildirfolder"), "", { mode: 0o600 });
}

export class MaildirUserStore implements UserStore {
  constructor(
    readonly user: string,
    readonly root: string,
    private readonly deps: UserStoreDeps,
  ) {}

  private pathOf(name: string): string {
    return name === "INBOX" ? this.root : join(this.root, folderDirName(name));
  }

  private async with<T>(name: string, fn: (mailbox: Mailbox) => Promise<T>): Promise<T> {
    const mailbox = this.deps.acquire(this.pathOf(name), this.root);
    try {
      return await fn(mailbox);
    } finally {
      this.deps.release(mailbox);
    }
  }

  private async folderNames(): Promise<string[]> {
    const names: string[] = [];
    for (const entry of await readdir(this.root, { withFileTypes: true })) {
      if (!entry.isDirectory()) continue;
      const name = decodeFolderDir(entry.name);
      if (name) names.push(name);
    }
    return names;
  }

  private async subscriptions(): Promise<string[]> {
    try {
      return (await readFile(join(this.root, SUBSCRIPTIONS_FILE), "utf8"))
        .split("\n")
        .filter((l) => l !== "");
    } catch (err) {
      if (isErrno(err, "ENOENT")) return [];
      throw err;
    }
  }

  private async writeSubscriptions(names: string[]): Promise<void> {
    const text = [...new Set(names)].map((n) => `${n}\n`).join("");
    const tmp = join(this.root, `${SUBSCRIPTIONS_FILE}.tmp${process.pid}${randomBytes(3).toString("hex")}`);
    await writeAtomic(tmp, join(this.root, SUBSCRIPTIONS_FILE), this.root, text, this.deps.fsync);
  }

  async listMailboxes(): Promise<MailboxInfo[]> {
    const existing = new Set(["INBOX", ...(await this.folderNames())]);
    const all = new Set(existing);
    for (const name of existing) for (const parent of parentsOf(name)) all.add(parent);
    const subscribed = new Set(await this.subscriptions());
    const withChildren = new Set<string>();
    for (const name of all) for (const parent of parentsOf(name)) withChildren.add(parent);
    const out: MailboxInfo[] = [];
    for (const name of [...all].sort()) {
      const info: MailboxInfo = {
        name,
        subscribed: subscribed.has(name),
        hasChildren: withChildren.has(name),
        noSelect: !existing.has(name),
      };
      if (existing.has(name) && name !== "INBOX") {
        const use = await readFile(join(this.pathOf(name), SPECIAL_USE_FILE), "utf8").catch(() => "");
        if (use.trim()) info.specialUse = use.trim();
      }
      out.push(info);
    }
    // RFC 3501 §6.3.6: a subscription outlives its mailbox; LSUB and LIST (SUBSCRIBED) still show it
    for (const name of subscribed) {
      if (!all.has(name))
        out.push({ name, subscribed: true, hasChildren: false, noSelect: true, nonExistent: true });
    }
    return out.sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
  }

  private async exists(name: string): Promise<boolean> {
    try {
      return (await stat(join(this.pathOf(name), "cur"))).isDirectory();
    } catch {
      return false;
    }
  }

  async createMailbox(rawName: string, options?: { specialUse?: string }): Promise<void> {
    // RFC 3501 §6.3.3: a trailing delimiter only says the client means to create children.
    const name = normalizeName(rawName.endsWith("/") ? rawName.slice(0, -1) : rawName);
    if (name === "INBOX" || (await this.exists(name)))
      throw new StoreError("ALREADYEXISTS", "mailbox exists");
    if (options?.specialUse !== undefined && !SPECIAL_USES.includes(options.specialUse)) {
      throw new StoreError("BADNAME", `unsupported special-use attribute ${options.specialUse}`);
    }
    // Built aside and renamed into place, so a half-made folder is never visible.
    const tmp = join(this.root, `..creating-${randomBytes(6).toString("hex")}`);
    await makeMaildir(tmp, true);
    if (options?.specialUse) await writeFile(join(tmp, SPECIAL_USE_FILE), `${options.specialUse}\n`);
    try {
      await rename(tmp, this.pathOf(name));
    } catch (err) {
      await rm(tmp, { recursive: true, force: true });
      if (isErrno(err, "EEXIST") || isErrno(err, "ENOTEMPTY")) {
        throw new StoreError("ALREADYEXISTS", "mailbox exists");
      }
      throw err;
    }
    if (this.deps.fsync) await fsyncPath(this.root);
  }

  async deleteMailbox(rawName: string): Promise<void> {
    const name = normalizeName(rawName);
    if (name === "INBOX") throw new StoreError("NOPERM", "INBOX cannot be deleted");
    if (!(await this.exists(name))) throw new StoreError("NONEXISTENT", "mailbox does not exist");
    const aside = join(this.root, `..deleting-${randomBytes(6).toString("hex")}`);
    // Its messages stop counting at the rename: maildirsize is recalculated after it.
    await withRecalculation(this.root, async () => {
      try {
        await rename(this.pathOf(name), aside);
      } catch (err) {
        if (isErrno(err, "ENOENT")) throw new StoreError("NONEXISTENT", "mailbox does not exist");
        throw err;
      }
    });
    await rm(aside, { recursive: true, force: true });
    // The subscription stays (RFC 3501 §6.3.6: the server MUST NOT remove a
    // name from the subscription list on its own; LSUB then shows it as
    // \NonExistent, as Dovecot does). UNSUBSCRIBE removes it.
  }

  async renameMailbox(rawFrom: string, rawTo: string): Promise<void> {
    const from = normalizeName(rawFrom);
    const to = normalizeName(rawTo);
    if (to === "INBOX" || (await this.exists(to)))
      throw new StoreError("ALREADYEXISTS", "target mailbox exists");
    const folders = await this.folderNames();
    const known = from === "INBOX" || folders.some((n) => n === from || n.startsWith(`${from}/`));
    if (!known) throw new StoreError("NONEXISTENT", "mailbox does not exist");
    if (from === "INBOX") return this.renameInbox(to);
    if (to.startsWith(`${from}/`)) throw new StoreError("BADNAME", "cannot move a mailbox into itself");
    const moves: Array<[string, string]> = [];
    for (const name of folders) {
      if (name === from || name.startsWith(`${from}/`)) {
        const target = to + name.slice(from.length);
        normalizeName(target);
        if (await this.exists(target)) throw new StoreError("ALREADYEXISTS", `${target} exists`);
        moves.push([name, target]);
      }
    }
    // Under the quota lock: a usage scan never sees a folder twice or not at all.
    await withUsage(this.root, async () => {
      for (const [a, b] of moves) await rename(this.pathOf(a), this.pathOf(b));
    });
    if (this.deps.fsync) await fsyncPath(this.root);
  }

  /** RFC 3501 §6.3.5: INBOX's messages move to the new mailbox; INBOX stays, empty. */
  private async renameInbox(to: string): Promise<void> {
    await this.createMailbox(to);
    const target = this.pathOf(to);
    await this.with("INBOX", (inbox) =>
      inbox.update(async (tx) => {
        const moved = tx.data.records.map((r) => ({ ...r, dir: "cur" as const }));
        await withUsage(this.root, async () => {
          for (const r of tx.data.records) {
            await rename(recordPath(inbox.path, r), join(target, "cur", curName(r.base, r.letters)));
          }
        });
        const data = emptyIndex(newUidValidity());
        data.records = moved;
        data.uidNext = tx.data.uidNext;
        data.firstRecentUid = tx.data.firstRecentUid;
        data.highestModseq = tx.data.highestModseq;
        if (tx.keywords.length > 0) {
          await writeFile(
            join(target, "dovecot-keywords"),
            tx.keywords.map((k, i) => `${i} ${k}\n`).join(""),
          );
        }
        // newMtime/curMtime "0": the target reconciles once, keeping these UIDs.
        await writeAtomic(
          join(target, `${INDEX_FILE}.tmp`),
          join(target, INDEX_FILE),
          target,
          serializeIndex(data),
          this.deps.fsync,
        );
        tx.data.records = [];
        tx.data.highestModseq += 1;
        tx.dirty = true;
      }),
    );
  }

  async subscribe(rawName: string): Promise<void> {
    const name = normalizeName(rawName);
    const subs = await this.subscriptions();
    if (!subs.includes(name)) await this.writeSubscriptions([...subs, name]);
  }

  async unsubscribe(rawName: string): Promise<void> {
    const name = normalizeName(rawName);
    const subs = await this.subscriptions();
    if (subs.includes(name)) await this.writeSubscriptions(subs.filter((s) => s !== name));
  }

  async status(rawName: string): Promise<MailboxStatus> {
    const name = normalizeName(rawName);
    return this.with(name, async (mailbox) => {
      const data = await mailbox.current();
      let unseen = 0;
      let recent = 0;
      let size = 0;
      for (const r of data.records) {
        if (!r.letters.includes("S")) unseen += 1;
        if (r.uid >= data.firstRecentUid) recent += 1;
        size += r.size;
      }
      return {
        name,
        messages: data.records.length,
        recent,
        unseen,
        uidNext: data.uidNext,
        uidValidity: data.uidValidity,
        highestModseq: data.highestModseq,
        size,
      };
    });
  }

  async openMailbox(rawName: string, options?: { readOnly?: boolean }): Promise<MailboxSession> {
    const name = normalizeName(rawName);
    const mailbox = this.deps.acquire(this.pathOf(name), this.root);
    try {
      const data = await mailbox.current();
      const session = new MaildirSession(
        name,
        data.uidValidity,
        options?.readOnly ?? false,
        mailbox,
        this.hooks(),
      );
      await session.init(data);
      return session;
    } catch (err) {
      this.deps.release(mailbox);
      throw err;
    }
  }

  private hooks(): SessionHooks {
    return {
      copyInto: (source, records, target) => this.copyInto(source, records, target),
      release: (mailbox) => this.deps.release(mailbox),
    };
  }

  private async checkQuota(bytes: number, messages: number): Promise<void> {
    const usage = await readUsage(this.root, this.deps.quotaBytes);
    if (usage.bytes + bytes > this.deps.quotaBytes) {
      throw new StoreError("OVERQUOTA", "mailbox is full");
    }
    void messages;
  }

  async append(rawName: string, raw: Buffer, options?: AppendOptions): Promise<AppendResult> {
    const name = normalizeName(rawName);
    // INBOX is the user's Maildir itself, made by open().
    if (name !== "INBOX" && !(await this.exists(name))) {
      if (!options?.createIfMissing) throw new StoreError("NONEXISTENT", "mailbox does not exist");
      await this.createMailbox(name).catch((err) => {
        if (!(err instanceof StoreError && err.code === "ALREADYEXISTS")) throw err;
      });
    }
    const flags = options?.flags ?? [];
    flagsToLetters(flags, []); // refuses bad flags before anything is written
    const content = toCrlf(raw);
    await this.checkQuota(content.length, 1);
    return this.with(name, async (mailbox) => {
      const tmp = await writeTmp(mailbox.path, content, options?.internalDate, this.deps.fsync);
      // commitAppend records the usage with the rename into new/ (quota.ts).
      return mailbox.commitAppend({ ...tmp, flags });
    });
  }

  private async copyInto(
    source: Mailbox,
    records: IndexRecord[],
    rawTarget: string,
  ): Promise<CopyResult & { uids: number[] }> {
    const target = normalizeName(rawTarget);
    if (!(await this.exists(target))) throw new StoreError("NONEXISTENT", "target mailbox does not exist");
    const total = records.reduce((s, r) => s + r.size, 0);
    await this.checkQuota(total, records.length);
    const keywords = await source.keywords();
    return this.with(target, async (mailbox) => {
      const mapping: Array<[number, number]> = [];
      const commits: Array<Promise<{ uid: number; uidValidity: number }>> = [];
      for (const r of records) {
        const tmp = await linkTmp(
          recordPath(source.path, r),
          mailbox.path,
          r.size,
          r.internalDate,
          this.deps.fsync,
        );
        const flags = [...lettersToFlags(r.letters, keywords)];
        commits.push(mailbox.commitAppend({ ...tmp, flags }));
      }
      const uids = (await Promise.all(commits)).map((c) => c.uid);
      for (const [i, r] of records.entries()) mapping.push([r.uid, uids[i] as number]);
      const data = await mailbox.current();
      return { uidValidity: data.uidValidity, mapping, uids };
    });
  }

  async quota(): Promise<QuotaInfo> {
    const usage = await readUsage(this.root, this.deps.quotaBytes);
    return { usedBytes: usage.bytes, limitBytes: this.deps.quotaBytes, messages: usage.messages };
  }

  async lockMaildrop(owner: string): Promise<() => Promise<void>> {
    void owner;
    return acquireLock(join(this.root, MAILDROP_LOCK_FILE), {
      timeoutMs: 0,
      staleMs: 0,
      otherHostIsStale: true,
      failFast: true,
    });
  }
}

let lastUidValidity = 0;
/** Seconds since the epoch, strictly increasing within the process (RFC 3501 §2.3.1.1). */
export function newUidValidity(): number {
  lastUidValidity = Math.max(Math.floor(Date.now() / 1000), lastUidValidity + 1);
  return lastUidValidity;
}
