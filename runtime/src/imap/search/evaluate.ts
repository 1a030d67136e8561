/**
 * Evaluates a SEARCH key tree against one message (RFC 3501 §6.4.4).
 * Text keys compare decoded, case-folded text: header values with RFC 2047
 * words decoded, bodies with transfer encoding and charset undone.
 */
import type { MessageMeta } from "../../store/types.js";
import { decodeBytes, decodeHeaderValue, decodeTransfer } from "../mime/decode.js";
import { header, type MimePart, param, parseMime } from "../mime/structure.js";
import { inSequenceSet } from "../wire/sequence.js";
import { type DateOp, dayNumber, type SearchKey } from "./keys.js";

export interface SearchTarget {
  seq: number;
  meta: MessageMeta;
  recent: boolean;
  maxSeq: number;
  maxUid: number;
  /** The raw message, when the key needs content. */
  content?: Buffer;
}

class ContentView {
  private root?: MimePart;
  private headerText?: Map<string, string[]>;
  private bodyText?: string;
  constructor(readonly buf: Buffer) {}
  get mime(): MimePart {
    this.root ??= parseMime(this.buf);
    return this.root;
  }
  headerValues(field: string): string[] {
    if (!this.headerText) {
      this.headerText = new Map();
      for (const h of this.mime.headers) {
        const list = this.headerText.get(h.key) ?? [];
        list.push(fold(decodeHeaderValue(h.value)));
        this.headerText.set(h.key, list);
      }
    }
    return this.headerText.get(field) ?? [];
  }
  allHeaders(): string {
    return fold(this.mime.headers.map((h) => `${h.key}: ${decodeHeaderValue(h.value)}`).join("\n"));
  }
  body(): string {
    if (this.bodyText === undefined) {
      const texts: string[] = [];
      collectText(this.buf, this.mime, texts, 0);
      this.bodyText = fold(texts.join("\n"));
    }
    return this.bodyText;
  }
}

function collectText(buf: Buffer, part: MimePart, out: string[], depth: number): void {
  if (depth > 50) return;
  if (part.type === "multipart") {
    for (const c of part.children) collectText(buf, c, out, depth + 1);
    return;
  }
  if (part.message) {
    out.push(part.message.headers.map((h) => decodeHeaderValue(h.value)).join("\n"));
    collectText(buf, part.message, out, depth + 1);
    return;
  }
  if (part.type !== "text") return;
  const raw = decodeTransfer(
    buf.subarray(part.bodyStart, part.end),
    header(part, "content-transfer-encoding"),
  );
  let text = decodeBytes(raw, param(part, "charset"));
  if (part.subtype === "html") text = text.replace(/<[^>]*>/g, " ");
  out.push(text);
}

/** Case folding for substring matches. */
export function fold(s: string): string {
  return s.normalize("NFC").toLowerCase();
}

function compareDay(day: number, op: DateOp, wanted: number): boolean {
  if (op === "before") return day < wanted;
  if (op === "on") return day === wanted;
  return day >= wanted;
}

const MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];

/** The date of a Date: header in its own time zone (RFC 3501: disregarding time and timezone). */
export function sentDay(value: string | undefined): number | undefined {
  if (!value) return undefined;
  const m = /(\d{1,2})\s+([A-Za-z]{3})[a-z]*\s+(\d{2,4})/.exec(value);
  if (m) {
    const month = MONTHS.indexOf(m[2]!.toLowerCase());
    let year = Number(m[3]);
    if (year < 50) year += 2000;
    else if (year < 1000) year += 1900;
    if (month >= 0) return dayNumber(year, month, Number(m[1]));
  }
  const t = Date.parse(value);
  return Number.isNaN(t) ? undefined : Math.floor(t / 86_400_000);
}

export function makeMatcher(key: SearchKey): (t: SearchTarget) => boolean {
  const views = new WeakMap<Buffer, ContentView>();
  const view = (t: SearchTarget): ContentView => {
    if (!t.content) throw new Error("search needs content that was not loaded");
    let v = views.get(t.content);
    if (!v) {
      v = new ContentView(t.content);
      views.set(t.content, v);
    }
    return v;
  };
  const test = (k: SearchKey, t: SearchTarget): boolean => {
    switch (k.k) {
      case "all":
        return true;
      case "flag":
        return hasFlag(t.meta.flags, k.flag) === k.present;
      case "new":
        return t.recent && !t.meta.flags.has("\\Seen");
      case "old":
        return !t.recent;
      case "recent":
        return t.recent;
      case "seq":
        return inSequenceSet(k.ranges, t.seq, t.maxSeq);
      case "uid":
        return inSequenceSet(k.ranges, t.meta.uid, t.maxUid);
      case "larger":
        return t.meta.size > k.n;
      case "smaller":
        return t.meta.size < k.n;
      case "modseq":
        return t.meta.modseq >= k.n;
      case "internaldate": {
        const d = t.meta.internalDate;
        return compareDay(dayNumber(d.getFullYear(), d.getMonth(), d.getDate()), k.op, k.day);
      }
      case "sentdate": {
        const day = sentDay(view(t).headerValues("date")[0]);
        return day !== undefined && compareDay(day, k.op, k.day);
      }
      case "header": {
        const needle = fold(k.value);
        const values = view(t).headerValues(k.field);
        // RFC 3501: HEADER with an empty string matches every message that has the field
        return values.some((v) => v.includes(needle));
      }
      case "body":
        return view(t).body().includes(fold(k.value));
      case "text": {
        const needle = fold(k.value);
        const v = view(t);
        return v.allHeaders().includes(needle) || v.body().includes(needle);
      }
      case "not":
        return !test(k.key, t);
      case "or":
        return test(k.a, t) || test(k.b, t);
      case "and":
        return k.keys.every((x) => test(x, t));
    }
  };
  return (t) => test(key, t);
}

function hasFlag(flags: Set<string>, flag: string): boolean {
  if (flags.has(flag)) return true;
  const lower = flag.toLowerCase();
  for (const f of flags) if (f.toLowerCase() === lower) return true;
  return false;
}
