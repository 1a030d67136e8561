/**
 * Maildir file names: `<unique>,S=<size>[:2,<flags>]`.
 *
 * The unique part follows Dovecot's pattern (`<secs>.M<usecs>P<pid>Q<n>R<rand>.<host>`)
 * and doubles as the message GUID (POP3 UIDL), so it survives index loss.
 * Flags (Maildir spec, "info" semantics): D=\Draft F=\Flagged R=\Answered
 * S=\Seen T=\Deleted; lowercase a–z are keywords numbered by `dovecot-keywords`.
 */
import { createHash, randomBytes } from "node:crypto";
import { hostname } from "node:os";

export const SYSTEM_FLAG_LETTERS: Readonly<Record<string, string>> = {
  "\\Draft": "D",
  "\\Flagged": "F",
  "\\Answered": "R",
  "\\Seen": "S",
  "\\Deleted": "T",
};
export const LETTER_SYSTEM_FLAGS: Readonly<Record<string, string>> = Object.fromEntries(
  Object.entries(SYSTEM_FLAG_LETTERS).map(([flag, letter]) => [letter, flag]),
);
/** Maildir keyword letters: 26 per mailbox. */
export const MAX_KEYWORDS = 26;

const HOST = hostname().replace(/[^A-Za-z0-9-]/g, "_") || "localhost";
let counter = 0;

export function uniqueName(now = Date.now()): string {
  counter += 1;
  const secs = Math.floor(now / 1000);
  const usecs = (now % 1000) * 1000 + Math.floor(Math.random() * 1000);
  return `${secs}.M${usecs}P${process.pid}Q${counter}R${randomBytes(4).toString("hex")}.${HOST}`;
}

export function baseName(unique: string, size: number): string {
  return `${unique},S=${size}`;
}

export interface ParsedName {
  /** Everything before ":" (the part the index keys on). */
  base: string;
  /** The flag letters after ":2," (sorted, deduplicated), "" when none. */
  letters: string;
  /** The RFC 822 (CRLF) size: from `,W=` or `,S=` when present. */
  size?: number;
}

export function parseName(name: string): ParsedName {
  const colon = name.indexOf(":");
  const base = colon < 0 ? name : name.slice(0, colon);
  const info = colon < 0 ? "" : name.slice(colon + 1);
  const letters = info.startsWith("2,") ? normalizeLetters(info.slice(2)) : "";
  // Dovecot stores LF line endings with S= the file size and W= the CRLF ("virtual") size;
  // we store CRLF, so S= is both. The RFC 822 size is W= when present.
  const match = /,W=(\d+)/.exec(base) ?? /,S=(\d+)/.exec(base);
  const parsed: ParsedName = { base, letters };
  if (match?.[1]) parsed.size = Number(match[1]);
  return parsed;
}

export function normalizeLetters(letters: string): string {
  return [...new Set(letters.replace(/[^A-Za-z]/g, ""))].sort().join("");
}

/** The file name in cur/ for a base and its flag letters. */
export function curName(base: string, letters: string): string {
  return `${base}:2,${letters}`;
}

/** The GUID of a message: its unique part when it is a valid UIDL (RFC 1939 §7), else a hash. */
export function guidOf(base: string): string {
  const unique = base.split(",")[0] ?? base;
  if (/^[\x21-\x7e]{1,70}$/.test(unique)) return unique;
  return createHash("sha1").update(base).digest("hex");
}
