/**
 * Shared pieces of the command files: message sets, flags, dates.
 */
import type { MessageMeta } from "../../store/types.js";
import { bad } from "../errors.js";
import type { Session } from "../session.js";
import { ArgumentError, nodeText } from "../wire/args.js";
import type { Node } from "../wire/parser.js";
import { inSequenceSet, type SeqRange } from "../wire/sequence.js";

export interface Target {
  seq: number;
  meta: MessageMeta;
}

/**
 * Messages a sequence set names (RFC 3501 §9 seq-number / uid). A sequence
 * number beyond the mailbox is an error; UIDs that do not exist are ignored
 * (RFC 3501 §6.4.8).
 */
export function resolveSet(session: Session, ranges: readonly SeqRange[], uid: boolean): Target[] {
  const messages = session.mailbox!.messages();
  const out: Target[] = [];
  if (uid) {
    const maxUid = messages.length ? messages[messages.length - 1]!.uid : 0;
    if (messages.length === 0) return out;
    messages.forEach((meta, i) => {
      if (inSequenceSet(ranges, meta.uid, maxUid)) out.push({ seq: i + 1, meta });
    });
    return out;
  }
  const count = messages.length;
  for (const [a, b] of ranges) {
    if ((a !== 0 && a > count) || (b !== 0 && b > count) || (count === 0 && (a === 0 || b === 0))) {
      throw bad("Invalid message sequence number");
    }
  }
  messages.forEach((meta, i) => {
    if (inSequenceSet(ranges, i + 1, count)) out.push({ seq: i + 1, meta });
  });
  return out;
}

const SYSTEM_FLAGS = new Set(["\\seen", "\\answered", "\\flagged", "\\deleted", "\\draft"]);
export const PERMANENT_SYSTEM_FLAGS = ["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"];

/** flag-list (RFC 3501 §9); system flags canonicalised, \Recent refused. */
export function parseFlags(nodes: Node[]): string[] {
  const out: string[] = [];
  for (const n of nodes) {
    if (n.type === "list") throw new ArgumentError("nested list in flags");
    const f = nodeText(n);
    if (f.startsWith("\\")) {
      const lower = f.toLowerCase();
      if (!SYSTEM_FLAGS.has(lower)) throw new ArgumentError(`invalid system flag ${f.slice(0, 30)}`);
      out.push(`\\${lower[1]!.toUpperCase()}${lower.slice(2)}`);
    } else {
      if (!/^[\x21-\x7e]+$/.test(f) || /[(){%*"\\\]]/.test(f))
        throw new ArgumentError(`invalid keyword ${f.slice(0, 30)}`);
      out.push(f);
    }
  }
  return out;
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** date-time = DQUOTE date-day-fixed "-" date-month "-" date-year SP time SP zone DQUOTE */
export function formatDateTime(d: Date): string {
  const off = -d.getTimezoneOffset();
  const sign = off >= 0 ? "+" : "-";
  const abs = Math.abs(off);
  const pad = (n: number, w = 2): string => String(n).padStart(w, "0");
  return `${String(d.getDate()).padStart(2, " ")}-${MONTHS[d.getMonth()]}-${d.getFullYear()} ${pad(d.getHours())}:${pad(
    d.getMinutes(),
  )}:${pad(d.getSeconds())} ${sign}${pad(Math.floor(abs / 60))}${pad(abs % 60)}`;
}

export function parseDateTime(text: string): Date {
  const m = /^\s?(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})$/.exec(text);
  const month = m ? MONTHS.findIndex((x) => x.toLowerCase() === m[2]!.toLowerCase()) : -1;
  if (!m || month < 0)
    throw new ArgumentError('invalid date-time, expected e.g. "17-Jul-1996 02:44:25 -0700"');
  const offset = (Number(m[8]) * 60 + Number(m[9])) * (m[7] === "-" ? -1 : 1);
  const utc = Date.UTC(Number(m[3]), month, Number(m[1]), Number(m[4]), Number(m[5]), Number(m[6]));
  return new Date(utc - offset * 60_000);
}

/** Flags a mailbox shows in FLAGS: the system flags plus keywords in use. */
export function mailboxFlags(session: Session): string[] {
  const flags = new Set(PERMANENT_SYSTEM_FLAGS);
  for (const m of session.mailbox?.messages() ?? []) for (const f of m.flags) flags.add(f);
  return [...flags];
}
