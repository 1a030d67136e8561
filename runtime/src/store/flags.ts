/**
 * IMAP flags ↔ Maildir flag letters. System flags have fixed letters; keywords
 * get a–z in the order the mailbox first saw them, kept in `dovecot-keywords`
 * (Dovecot's format: "<n> <keyword>" per line), written atomically under the
 * mailbox lock.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { LETTER_SYSTEM_FLAGS, MAX_KEYWORDS, SYSTEM_FLAG_LETTERS } from "./filename.js";
import { isErrno, writeAtomic } from "./fsutil.js";
import { StoreError } from "./types.js";

export const KEYWORDS_FILE = "dovecot-keywords";

/** RFC 3501 §9 flag-keyword = atom: no specials, no controls, no "\". */
const KEYWORD = /^[^\s(){%*"\\\]\u0000-\u001f\u007f]{1,100}$/;

export async function readKeywords(dir: string): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(join(dir, KEYWORDS_FILE), "utf8");
  } catch (err) {
    if (isErrno(err, "ENOENT")) return [];
    throw err;
  }
  const out: string[] = [];
  for (const line of text.split("\n")) {
    const m = /^(\d+) (.+)$/.exec(line);
    if (m && Number(m[1]) < MAX_KEYWORDS) out[Number(m[1])] = m[2] as string;
  }
  return out;
}

export async function writeKeywords(dir: string, keywords: string[], fsync: boolean): Promise<void> {
  const text = keywords.map((k, i) => `${i} ${k}\n`).join("");
  await writeAtomic(join(dir, `${KEYWORDS_FILE}.tmp`), join(dir, KEYWORDS_FILE), dir, text, fsync);
}

export function lettersToFlags(letters: string, keywords: readonly string[]): Set<string> {
  const flags = new Set<string>();
  for (const ch of letters) {
    const system = LETTER_SYSTEM_FLAGS[ch];
    if (system) flags.add(system);
    else if (ch >= "a" && ch <= "z") {
      const kw = keywords[ch.charCodeAt(0) - 97];
      if (kw) flags.add(kw);
    }
  }
  return flags;
}

/**
 * Flags → letters; unknown keywords are appended to `keywords` (the caller
 * saves the list). \Recent is never stored (RFC 3501 §2.3.2); other unknown
 * system flags are refused.
 */
export function flagsToLetters(
  flags: Iterable<string>,
  keywords: string[],
): { letters: string; added: boolean } {
  let letters = "";
  let added = false;
  for (const flag of flags) {
    if (flag.startsWith("\\")) {
      const canonical = Object.keys(SYSTEM_FLAG_LETTERS).find((f) => f.toLowerCase() === flag.toLowerCase());
      if (canonical) letters += SYSTEM_FLAG_LETTERS[canonical];
      else if (flag.toLowerCase() !== "\\recent")
        throw new StoreError("BADNAME", `unknown system flag ${flag}`);
      continue;
    }
    if (!KEYWORD.test(flag)) throw new StoreError("BADNAME", "invalid keyword");
    let index = keywords.findIndex((k) => k.toLowerCase() === flag.toLowerCase());
    if (index < 0) {
      if (keywords.length >= MAX_KEYWORDS) {
        throw new StoreError("NOPERM", `too many keywords in this mailbox (at most ${MAX_KEYWORDS})`);
      }
      keywords.push(flag);
      index = keywords.length - 1;
      added = true;
    }
    letters += String.fromCharCode(97 + index);
  }
  return { letters: [...new Set(letters)].sort().join(""), added };
}
