/**
 * The MailStore over a Maildir++ tree: `<root>/<uid>/` per account. Mailbox
 * objects (cached index, mutex, watchers) are shared by every session of this
 * process on the same directory and dropped when nobody uses them.
 */
import { readdir, stat, unlink } from "node:fs/promises";
import { join } from "node:path";
import { isErrno } from "./fsutil.js";
import { Mailbox } from "./mailbox.js";
import { checkUser } from "./names.js";
import type { MailStore, UserStore } from "./types.js";
import { MaildirUserStore, makeMaildir, newUidValidity } from "./user-store.js";

export interface MaildirStoreOptions {
  /** The store's mount (the SAN volume). */
  root: string;
  /** fsync messages, indexes and directories before acknowledging. Defaults to true. */
  fsync?: boolean;
  /** Quota when the directory has none for the account. */
  defaultQuotaBytes: number;
}

/** Unused mailboxes kept with their parsed index. */
export const IDLE_MAILBOX_CACHE = 256;

/** tmp/ files older than this are leftovers of crashed writers (Maildir spec: 36 hours). */
export const TMP_MAX_AGE_MS = 36 * 3600 * 1000;

async function cleanTmp(path: string): Promise<void> {
  const dir = join(path, "tmp");
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return;
  }
  const cutoff = Date.now() - TMP_MAX_AGE_MS;
  for (const name of names) {
    const file = join(dir, name);
    const st = await stat(file).catch(() => null);
    if (st && st.mtimeMs < cutoff && st.ctimeMs < cutoff) await unlink(file).catch(() => undefined);
  }
}

export function createMaildirStore(options: MaildirStoreOptions): MailStore {
  const fsync = options.fsync ?? true;
  const mailboxes = new Map<string, Mailbox>();
  // Roots known to exist (and whose tmp/ was swept) in this process: no stat per delivery.
  const known = new Set<string>();

  const acquire = (path: string, accountRoot: string): Mailbox => {
    let mailbox = mailboxes.get(path);
    if (mailbox) idle.delete(mailbox);
    if (!mailbox) {
      mailbox = new Mailbox(path, { fsync, newUidValidity, accountRoot });
      mailboxes.set(path, mailbox);
    }
    mailbox.refs += 1;
    return mailbox;
  };
  // Mailboxes nobody uses stay cached (their parsed index saves a read per delivery), least recently used first out.
  const idle = new Set<Mailbox>();
  const release = (mailbox: Mailbox): void => {
    mailbox.refs -= 1;
    // Let in-flight work settle before parking it.
    setImmediate(() => {
      if (!mailbox.idle || mailboxes.get(mailbox.path) !== mailbox) return;
      idle.delete(mailbox);
      idle.add(mailbox);
      while (idle.size > IDLE_MAILBOX_CACHE) {
        const oldest = idle.values().next().value as Mailbox;
        idle.delete(oldest);
        if (oldest.idle && mailboxes.get(oldest.path) === oldest) {
          oldest.close();
          mailboxes.delete(oldest.path);
        }
      }
    });
  };

  return {
    async open(user: string, openOptions?: { quotaBytes?: number }): Promise<UserStore> {
      const root = join(options.root, checkUser(user));
      if (!known.has(root)) {
        try {
          await stat(join(root, "cur"));
        } catch (err) {
          if (!isErrno(err, "ENOENT")) throw err;
          await makeMaildir(root, false);
        }
        void cleanTmp(root);
        if (known.size > 100_000) known.clear();
        known.add(root);
      }
      return new MaildirUserStore(user, root, {
        fsync,
        quotaBytes: openOptions?.quotaBytes ?? options.defaultQuotaBytes,
        acquire,
        release,
      });
    },
    async close(): Promise<void> {
      for (const mailbox of mailboxes.values()) mailbox.close();
      mailboxes.clear();
      idle.clear();
    },
  };
}
