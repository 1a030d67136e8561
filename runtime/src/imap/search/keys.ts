/**
 * SEARCH keys (RFC 3501 §6.4.4, RFC 7162 §3.1.5 MODSEQ): tokens in, a key
 * tree out. String arguments are decoded from the command's CHARSET.
 */
import { decodeBytes, knownCharset } from "../mime/decode.js";
import { ArgumentError } from "../wire/args.js";
import type { Node } from "../wire/parser.js";
import { parseSequenceSet, type SeqRange, SequenceError } from "../wire/sequence.js";

export type DateOp = "before" | "on" | "since";

export type SearchKey =
  | { k: "all" }
  | { k: "flag"; flag: string; present: boolean }
  | { k: "new" }
  | { k: "old" }
  | { k: "recent" }
  | { k: "seq"; ranges: SeqRange[] }
  | { k: "uid"; ranges: SeqRange[] }
  | { k: "header"; field: string; value: string }
  | { k: "body"; value: string }
  | { k: "text"; value: string }
  | { k: "internaldate"; op: DateOp; day: number }
  | { k: "sentdate"; op: DateOp; day: number }
  | { k: "larger"; n: number }
  | { k: "smaller"; n: number }
  | { k: "modseq"; n: number }
  | { k: "not"; key: SearchKey }
  | { k: "or"; a: SearchKey; b: SearchKey }
  | { k: "and"; keys: SearchKey[] };

export class BadCharsetError extends Error {}

const MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];

/** date = date-text / DQUOTE date-text DQUOTE ; date-text = date-day "-" date-month "-" date-year */
export function parseSearchDate(text: string): number {
  const m = /^(\d{1,2})-([A-Za-z]{3})-(\d{4})$/.exec(text);
  const month = m ? MONTHS.indexOf(m[2]!.toLowerCase()) : -1;
  if (!m || month < 0)
    throw new ArgumentError(`invalid date ${JSON.stringify(text.slice(0, 30))}, expected e.g. 1-Feb-1994`);
  return dayNumber(Number(m[3]), month, Number(m[1]));
}

export function dayNumber(year: number, month: number, day: number): number {
  return Math.floor(Date.UTC(year, month, day) / 86_400_000);
}

const FLAG_KEYS: Record<string, [string, boolean]> = {
  ANSWERED: ["\\Answered", true],
  DELETED: ["\\Deleted", true],
  DRAFT: ["\\Draft", true],
  FLAGGED: ["\\Flagged", true],
  SEEN: ["\\Seen", true],
  UNANSWERED: ["\\Answered", false],
  UNDELETED: ["\\Deleted", false],
  UNDRAFT: ["\\Draft", false],
  UNFLAGGED: ["\\Flagged", false],
  UNSEEN: ["\\Seen", false],
};

const HEADER_KEYS: Record<string, string> = {
  BCC: "bcc",
  CC: "cc",
  FROM: "from",
  SUBJECT: "subject",
  TO: "to",
};

export const MAX_SEARCH_DEPTH = 100;

export class SearchParser {
  private i = 0;
  constructor(
    private readonly nodes: Node[],
    private readonly charset: string,
  ) {
    if (!knownCharset(charset)) throw new BadCharsetError(charset);
  }

  parseAll(): SearchKey {
    const keys: SearchKey[] = [];
    while (this.i < this.nodes.length) keys.push(this.key(0));
    if (keys.length === 0) throw new ArgumentError("missing search criteria");
    return keys.length === 1 ? keys[0]! : { k: "and", keys };
  }

  private next(what: string): Node {
    const n = this.nodes[this.i++];
    if (!n) throw new ArgumentError(`missing ${what}`);
    return n;
  }

  private str(what: string): string {
    const n = this.next(what);
    if (n.type === "list") throw new ArgumentError(`expected a string for ${what}`);
    if (n.type === "atom") return n.value;
    return decodeBytes(n.value, this.charset);
  }

  private num(what: string): number {
    const n = this.next(what);
    if (n.type !== "atom" || !/^\d{1,20}$/.test(n.value))
      throw new ArgumentError(`expected a number for ${what}`);
    return Number(n.value);
  }

  private key(depth: number): SearchKey {
    if (depth > MAX_SEARCH_DEPTH) throw new ArgumentError("search criteria nested too deeply");
    const n = this.next("search key");
    if (n.type === "list") {
      const sub = new SearchParser(n.items, this.charset);
      const keys: SearchKey[] = [];
      while (sub.i < sub.nodes.length) keys.push(sub.key(depth + 1));
      if (keys.length === 0) throw new ArgumentError("empty search list");
      return keys.length === 1 ? keys[0]! : { k: "and", keys };
    }
    if (n.type === "string") throw new ArgumentError("unexpected string where a search key was expected");
    const word = n.value.toUpperCase();
    const flag = FLAG_KEYS[word];
    if (flag) return { k: "flag", flag: flag[0], present: flag[1] };
    const hdr = HEADER_KEYS[word];
    if (hdr) return { k: "header", field: hdr, value: this.str(word) };
    switch (word) {
      case "ALL":
        return { k: "all" };
      case "NEW":
        return { k: "new" };
      case "OLD":
        return { k: "old" };
      case "RECENT":
        return { k: "recent" };
      case "KEYWORD":
      case "UNKEYWORD":
        return { k: "flag", flag: this.str("keyword"), present: word === "KEYWORD" };
      case "HEADER": {
        const field = this.str("header field name").toLowerCase();
        return { k: "header", field, value: this.str("header value") };
      }
      case "BODY":
        return { k: "body", value: this.str("BODY string") };
      case "TEXT":
        return { k: "text", value: this.str("TEXT string") };
      case "BEFORE":
      case "ON":
      case "SINCE":
        return {
          k: "internaldate",
          op: word.toLowerCase() as DateOp,
          day: parseSearchDate(this.str("date")),
        };
      case "SENTBEFORE":
      case "SENTON":
      case "SENTSINCE":
        return {
          k: "sentdate",
          op: word.slice(4).toLowerCase() as DateOp,
          day: parseSearchDate(this.str("date")),
        };
      case "LARGER":
        return { k: "larger", n: this.num("LARGER") };
      case "SMALLER":
        return { k: "smaller", n: this.num("SMALLER") };
      case "UID":
        return { k: "uid", ranges: this.seq() };
      case "NOT":
        return { k: "not", key: this.key(depth + 1) };
      case "OR": {
        const a = this.key(depth + 1);
        return { k: "or", a, b: this.key(depth + 1) };
      }
      case "MODSEQ": {
        // RFC 7162 §3.1.5: MODSEQ [entry-name entry-type-req] mod-sequence-valzer
        const peek = this.nodes[this.i];
        if (peek?.type === "string" || (peek?.type === "atom" && !/^\d+$/.test(peek.value))) {
          this.i += 2;
        }
        return { k: "modseq", n: this.num("MODSEQ") };
      }
      default:
        if (/^[0-9*:,]+$/.test(n.value)) {
          this.i--;
          return { k: "seq", ranges: this.seq() };
        }
        throw new ArgumentError(`unknown search key ${JSON.stringify(n.value.slice(0, 30))}`);
    }
  }

  private seq(): SeqRange[] {
    const n = this.next("sequence set");
    if (n.type !== "atom") throw new ArgumentError("expected a sequence set");
    try {
      return parseSequenceSet(n.value);
    } catch (err) {
      if (err instanceof SequenceError) throw new ArgumentError(err.message);
      throw err;
    }
  }
}

export function needsContent(key: SearchKey): boolean {
  switch (key.k) {
    case "header":
    case "body":
    case "text":
    case "sentdate":
      return true;
    case "not":
      return needsContent(key.key);
    case "or":
      return needsContent(key.a) || needsContent(key.b);
    case "and":
      return key.keys.some(needsContent);
    default:
      return false;
  }
}

export function usesModseq(key: SearchKey): boolean {
  switch (key.k) {
    case "modseq":
      return true;
    case "not":
      return usesModseq(key.key);
    case "or":
      return usesModseq(key.a) || usesModseq(key.b);
    case "and":
      return key.keys.some(usesModseq);
    default:
      return false;
  }
}

/** BODY and TEXT need the body; every other content key is answered from the header block. */
export function needsBody(key: SearchKey): boolean {
  switch (key.k) {
    case "body":
    case "text":
      return true;
    case "not":
      return needsBody(key.key);
    case "or":
      return needsBody(key.a) || needsBody(key.b);
    case "and":
      return key.keys.some(needsBody);
    default:
      return false;
  }
}
