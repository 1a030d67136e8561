/**
 * Mailbox and user names → paths in the Maildir++ tree.
 *
 * API names are Unicode with "/" as the hierarchy delimiter; on disk a folder is
 * `.<c1>.<c2>` under the user's Maildir (Maildir++: "." separates levels). Each
 * component is kept as UTF-8 (like Dovecot's `:UTF-8` mail_location option) with
 * "%" and "." escaped as `%25` / `%2E`, so a component can never contain the
 * separator and a folder name can never start a `..` path. INBOX is the Maildir
 * itself. Anything odd is refused with StoreError("BADNAME") before it reaches
 * the file system.
 */
import { StoreError } from "./types.js";

/** One path component on disk is at most 255 bytes; leave room for a temp prefix. */
export const MAX_FOLDER_NAME_BYTES = 200;
export const MAX_NAME_DEPTH = 16;

// C0, DEL and C1 controls, plus the Unicode line/paragraph separators.
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;

/** The account's directory name under the store root. */
export function checkUser(user: string): string {
  if (
    user.length === 0 ||
    user.length > 255 ||
    user.includes("/") ||
    user.includes("\\") ||
    user.startsWith(".") ||
    CONTROL.test(user)
  ) {
    throw new StoreError("BADNAME", "invalid account name");
  }
  return user;
}

/** Canonical API name: "INBOX" case-insensitively, components checked. */
export function normalizeName(name: string): string {
  if (typeof name !== "string" || name.length === 0) throw new StoreError("BADNAME", "empty mailbox name");
  if (CONTROL.test(name)) throw new StoreError("BADNAME", "control characters in mailbox name");
  const parts = name.split("/");
  if (parts.length > MAX_NAME_DEPTH) throw new StoreError("BADNAME", "mailbox name too deep");
  for (const part of parts) {
    if (part.length === 0) throw new StoreError("BADNAME", "empty component in mailbox name");
    if (part === "." || part === "..") throw new StoreError("BADNAME", "'.' and '..' are not mailbox names");
  }
  if (parts[0]?.toUpperCase() === "INBOX") parts[0] = "INBOX";
  const normalized = parts.join("/");
  if (normalized !== "INBOX" && Buffer.byteLength(folderDirName(normalized)) > MAX_FOLDER_NAME_BYTES) {
    throw new StoreError("BADNAME", "mailbox name too long");
  }
  return normalized;
}

function escapeComponent(part: string): string {
  return part.replace(/%/g, "%25").replace(/\./g, "%2E");
}

/** The folder's directory name (no checks: call normalizeName first). */
export function folderDirName(name: string): string {
  return `.${name.split("/").map(escapeComponent).join(".")}`;
}

/** Directory entry → API name, or null for entries that are not our folders (foreign or junk). */
export function decodeFolderDir(entry: string): string | null {
  if (!entry.startsWith(".") || entry === "." || entry === "..") return null;
  const name = entry
    .slice(1)
    .split(".")
    .map((part) => part.replace(/%2E/gi, ".").replace(/%25/g, "%"))
    .join("/");
  try {
    return name !== "INBOX" && normalizeName(name) === name && folderDirName(name) === entry ? name : null;
  } catch {
    return null;
  }
}

/** Every ancestor of a name: "a/b/c" → ["a", "a/b"]. */
export function parentsOf(name: string): string[] {
  const parts = name.split("/");
  const out: string[] = [];
  for (let i = 1; i < parts.length; i++) out.push(parts.slice(0, i).join("/"));
  return out;
}
