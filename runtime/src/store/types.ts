/**
 * The storage interface every protocol talks to (IMAP, POP3, LMTP, Sieve,
 * webmail). Protocol code never touches Maildir files; the Maildir++ backend in
 * this folder implements it (save, index/uidlist, filename flags, sync, expunge
 * split by concern).
 *
 * Mailbox names here are Unicode strings with "/" as the hierarchy delimiter
 * ("INBOX", "Archive/2024", "Entwürfe"). The IMAP layer converts modified
 * UTF-7 (RFC 3501 §5.1.3); the backend maps names to Maildir++ folders and
 * rejects bad names with StoreError("BADNAME").
 *
 * Ownership: store/ owns this file. Other modules may ADD optional members
 * (mark them `// requested by <module>`), never change existing ones.
 */

/** A system flag (RFC 3501 §2.3.2) or a keyword. `\Recent` is per session and never stored. */
export type Flag = string;

export type StoreErrorCode =
  | "NONEXISTENT" // mailbox does not exist
  | "ALREADYEXISTS"
  | "BADNAME" // name invalid: `..`, control characters, outside the user's tree …
  | "OVERQUOTA"
  | "NOPERM" // e.g. deleting INBOX
  | "INUSE" // a lock is held (POP3 maildrop lock)
  | "TEMPFAIL" // I/O fault: retry later (LMTP 451)
  | "EXPUNGED"; // the message is gone

/** Errors carry a code that each protocol maps at its edge ([NONEXISTENT], 552 5.2.2, 451 …). */
export class StoreError extends Error {
  constructor(
    readonly code: StoreErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "StoreError";
  }
}

export interface MailboxInfo {
  name: string;
  /** RFC 6154 special use, e.g. "\\Sent". */
  specialUse?: string;
  subscribed: boolean;
  hasChildren: boolean;
  /** \Noselect: exists only as a parent. */
  noSelect: boolean;
  /**
   * Subscribed but not there (deleted elsewhere, renamed, never created):
   * RFC 3501 §6.3.6 keeps the subscription, RFC 5258 lists it as \NonExistent.
   */
  nonExistent?: boolean; // requested by imap (LSUB, LIST (SUBSCRIBED))
}

export interface MailboxStatus {
  name: string;
  messages: number;
  recent: number;
  unseen: number;
  uidNext: number;
  uidValidity: number;
  highestModseq: number;
  /** Sum of message sizes in octets. */
  size: number;
}

export interface MessageMeta {
  uid: number;
  flags: Set<Flag>;
  modseq: number;
  /** RFC 822 size in octets, CRLF line endings. */
  size: number;
  internalDate: Date;
  /** Stable per message across sessions, restarts and failover (POP3 UIDL). */
  guid: string;
}

/** What changed in a mailbox since a session's last sync. */
export interface MailboxChanges {
  added: MessageMeta[];
  expunged: number[]; // UIDs
  flagsChanged: MessageMeta[];
}

export interface AppendOptions {
  flags?: Flag[];
  internalDate?: Date;
  /** LMTP/Sieve delivery checks quota and never creates mailboxes unless asked. */
  createIfMissing?: boolean;
}

export interface AppendResult {
  uidValidity: number;
  uid: number;
}

export interface QuotaInfo {
  usedBytes: number;
  limitBytes: number;
  messages: number;
}

export type FlagOperation = "add" | "remove" | "replace";

export interface StoreFlagsResult {
  /** Messages whose flags were changed, with their new state. */
  changed: MessageMeta[];
  /** CONDSTORE (RFC 7162 §3.1.3): UIDs not changed because their modseq > unchangedSince. */
  modified: number[];
}

export interface CopyResult {
  uidValidity: number;
  /** [source UID, destination UID] pairs, for UIDPLUS COPYUID (RFC 4315). */
  mapping: Array<[number, number]>;
}

/** A selected mailbox as one session sees it. */
export interface MailboxSession {
  readonly name: string;
  readonly uidValidity: number;
  readonly readOnly: boolean;
  /** The session's snapshot, in sequence-number order (index 0 = seq 1). */
  messages(): readonly MessageMeta[];
  /** UIDs that are \Recent for this session (RFC 3501 §2.3.2). */
  recent(): ReadonlySet<number>;
  highestModseq(): number;
  uidNext(): number;
  /** Pick up changes made by other sessions or deliveries; updates the snapshot. */
  sync(): Promise<MailboxChanges>;
  /** The whole message, CRLF line endings. */
  read(uid: number): Promise<Buffer>;
  setFlags(
    uids: number[],
    op: FlagOperation,
    flags: Flag[],
    options?: { unchangedSince?: number },
  ): Promise<StoreFlagsResult>;
  copy(uids: number[], target: string): Promise<CopyResult>;
  /** RFC 6851 MOVE: copy, then expunge the sources. */
  move(uids: number[], target: string): Promise<CopyResult>;
  /** Remove \Deleted messages (only those in `uids` when given: UID EXPUNGE). Returns expunged UIDs. */
  expunge(uids?: number[]): Promise<number[]>;
  /** Called when another session or a delivery changes this mailbox (for IDLE and untagged updates). */
  onChange(listener: () => void): () => void;
  close(): Promise<void>;
}

/** One user's mail. */
export interface UserStore {
  readonly user: string;
  listMailboxes(): Promise<MailboxInfo[]>;
  createMailbox(name: string, options?: { specialUse?: string }): Promise<void>;
  /** RFC 3501 §6.3.4 semantics; INBOX cannot be deleted (NOPERM). */
  deleteMailbox(name: string): Promise<void>;
  /** RFC 3501 §6.3.5: renaming INBOX moves its messages to the new name. */
  renameMailbox(from: string, to: string): Promise<void>;
  subscribe(name: string): Promise<void>;
  unsubscribe(name: string): Promise<void>;
  status(name: string): Promise<MailboxStatus>;
  openMailbox(name: string, options?: { readOnly?: boolean }): Promise<MailboxSession>;
  /** Durable (fsynced file and directory) before it resolves. Checks quota. */
  append(mailbox: string, content: Buffer, options?: AppendOptions): Promise<AppendResult>;
  quota(): Promise<QuotaInfo>;
  /** Exclusive lock of the maildrop for POP3 (RFC 1939 §8); INUSE when held elsewhere. */
  lockMaildrop(owner: string): Promise<() => Promise<void>>;
}

export interface MailStore {
  /** `user` is the account's uid from the directory; quota from the directory or the default. */
  open(user: string, options?: { quotaBytes?: number }): Promise<UserStore>;
  close(): Promise<void>;
}
