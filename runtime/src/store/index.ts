/**
 * The mailstore: the MailStore contract (types.ts) and its Maildir++ backend.
 *
 * Semantics the protocol layers rely on (beyond types.ts):
 * - A session's snapshot changes only in sync() and in the session's own
 *   setFlags/expunge/move, which update it at once; sync() then reports only
 *   what others did (so no change is reported twice).
 * - sync() throws StoreError("NONEXISTENT") when the mailbox was deleted or
 *   rebuilt with a new UIDVALIDITY: the session must be closed.
 * - MessageMeta.guid is the Maildir unique name (valid as a POP3 UIDL).
 */
export { createMaildirStore, type MaildirStoreOptions } from "./maildir-store.js";
export { normalizeName } from "./names.js";
export * from "./types.js";
