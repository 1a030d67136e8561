/**
 * Command parser: one complete command (its lines and literal bytes, as the
 * framer hands them over) in, a token tree out. Grammar from RFC 3501 §9:
 *
 *   command = tag SP (command-any / command-auth / command-nonauth / command-select) CRLF
 *   string  = quoted / literal ; literal = "{" number ["+"] "}" CRLF *CHAR8 (RFC 7888 for "+")
 *
 * Arguments stay generic here (atom, string, list; sections and partials on
 * fetch atoms such as BODY.PEEK[HEADER.FIELDS (FROM)]<0.100>); each command
 * file turns them into typed arguments.
 */
import { isCtl, isTag } from "./formal-syntax.js";

export interface AtomNode {
  type: "atom";
  value: string;
  /** BODY[...] / BINARY[...]: the tokens between the brackets. */
  section?: Node[];
  /** <start.length> after a section (RFC 3501 §6.4.5). */
  partial?: { start: number; length: number };
}
export interface StringNode {
  type: "string";
  value: Buffer;
  literal: boolean;
}
export interface ListNode {
  type: "list";
  items: Node[];
}
export type Node = AtomNode | StringNode | ListNode;

export interface ParsedCommand {
  tag: string;
  /** Upper-cased verb ("FETCH"; "UID" commands keep "UID" with the verb in `args[0]`). */
  command: string;
  args: Node[];
}

export class ParseError extends Error {
  constructor(
    message: string,
    readonly tag?: string,
  ) {
    super(message);
    this.name = "ParseError";
  }
}

/** Nesting deeper than this is refused (a cheap guard against stack exhaustion). */
export const MAX_NESTING = 50;

const SP = 0x20;
const LPAREN = 0x28;
const RPAREN = 0x29;
const DQUOTE = 0x22;
const BACKSLASH = 0x5c;
const LBRACE = 0x7b;
const LBRACKET = 0x5b;
const RBRACKET = 0x5d;
const LT = 0x3c;
const CR = 0x0d;
const LF = 0x0a;

class Cursor {
  pos = 0;
  constructor(readonly buf: Buffer) {}
  get done(): boolean {
    return this.pos >= this.buf.length;
  }
  peek(): number {
    return this.pos < this.buf.length ? this.buf[this.pos]! : -1;
  }
}

/** Reads the tag (for error replies) without parsing the rest. */
export function peekTag(buf: Buffer): string | undefined {
  let end = 0;
  while (end < buf.length && end < 256) {
    const c = buf[end]!;
    if (c === SP || c === CR || c === LF) break;
    end++;
  }
  const tag = buf.subarray(0, end).toString("latin1");
  return isTag(tag) ? tag : undefined;
}

export function parseCommand(input: Buffer | string): ParsedCommand {
  const buf = typeof input === "string" ? Buffer.from(input, "utf8") : input;
  // the framer has already removed the final CRLF (a literal may end in CRLF itself)
  const len = buf.length;
  const cur = new Cursor(buf.subarray(0, len));

  const tagEnd = buf.indexOf(SP);
  const tagText = buf.subarray(0, tagEnd < 0 || tagEnd > len ? len : tagEnd).toString("latin1");
  if (!isTag(tagText)) throw new ParseError("invalid tag");
  const tag = tagText;
  cur.pos = tag.length;
  if (cur.peek() !== SP) throw new ParseError("missing command", tag);
  cur.pos++;
  const start = cur.pos;
  while (!cur.done && cur.peek() !== SP) {
    const c = cur.peek();
    const alpha =
      (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d;
    if (!alpha) throw new ParseError("invalid command name", tag);
    cur.pos++;
  }
  const command = cur.buf.subarray(start, cur.pos).toString("latin1").toUpperCase();
  if (command === "") throw new ParseError("missing command", tag);
  let args: Node[] = [];
  if (!cur.done) {
    cur.pos++; // SP
    try {
      args = parseSequence(cur, 0, -1, false);
    } catch (err) {
      if (err instanceof ParseError) throw new ParseError(err.message, tag);
      throw err;
    }
  }
  return { tag, command, args };
}

/** Parses SP-separated tokens until `close` (or the end when close is -1). */
function parseSequence(cur: Cursor, depth: number, close: number, inSection: boolean): Node[] {
  if (depth > MAX_NESTING) throw new ParseError("too deeply nested");
  const items: Node[] = [];
  for (;;) {
    if (cur.done) {
      if (close !== -1) throw new ParseError(`unterminated ${close === RPAREN ? "list" : "section"}`);
      return items;
    }
    const c = cur.peek();
    if (c === close) {
      cur.pos++;
      return items;
    }
    if (items.length > 0) {
      if (c !== SP) throw new ParseError("expected a space between arguments");
      cur.pos++;
      if (cur.peek() === SP) throw new ParseError("unexpected double space");
      // a trailing space before CRLF is a common client slip; tolerate it
      if (cur.done && close === -1) return items;
    }
    items.push(parseToken(cur, depth, inSection));
  }
}

function parseToken(cur: Cursor, depth: number, inSection: boolean): Node {
  const c = cur.peek();
  if (c === LPAREN) {
    cur.pos++;
    return { type: "list", items: parseSequence(cur, depth + 1, RPAREN, inSection) };
  }
  if (c === DQUOTE) return parseQuoted(cur);
  if (c === LBRACE) return parseLiteral(cur);
  if (c === RPAREN) throw new ParseError("unexpected )");
  return parseAtom(cur, depth, inSection);
}

function parseQuoted(cur: Cursor): StringNode {
  cur.pos++;
  const bytes: number[] = [];
  for (;;) {
    if (cur.done) throw new ParseError("unterminated quoted string");
    const c = cur.buf[cur.pos++]!;
    if (c === DQUOTE) break;
    if (c === CR || c === LF) throw new ParseError("CR or LF in quoted string");
    if (c === BACKSLASH) {
      const n = cur.buf[cur.pos++];
      // quoted-specials only (RFC 3501 §9: "\" quoted-specials)
      if (n !== DQUOTE && n !== BACKSLASH) throw new ParseError("invalid escape in quoted string");
      bytes.push(n);
      continue;
    }
    bytes.push(c);
  }
  return { type: "string", value: Buffer.from(bytes), literal: false };
}

function parseLiteral(cur: Cursor): StringNode {
  const close = cur.buf.indexOf("}", cur.pos);
  if (close < 0) throw new ParseError("unterminated literal size");
  let spec = cur.buf.subarray(cur.pos + 1, close).toString("latin1");
  if (spec.endsWith("+")) spec = spec.slice(0, -1);
  if (!/^\d{1,10}$/.test(spec)) throw new ParseError("invalid literal size");
  const size = Number(spec);
  let p = close + 1;
  if (cur.buf[p] === CR) p++;
  if (cur.buf[p] !== LF) throw new ParseError("literal size must end the line");
  p++;
  if (p + size > cur.buf.length) throw new ParseError("literal shorter than announced");
  cur.pos = p + size;
  return { type: "string", value: cur.buf.subarray(p, p + size), literal: true };
}

function parseAtom(cur: Cursor, depth: number, inSection: boolean): AtomNode {
  const start = cur.pos;
  while (!cur.done) {
    const c = cur.peek();
    if (c === SP || c === LPAREN || c === RPAREN || c === DQUOTE || isCtl(c)) break;
    if (c === LBRACKET || (inSection && c === RBRACKET)) break;
    if (c === LBRACE) throw new ParseError("unexpected { inside an atom");
    cur.pos++;
  }
  const value = cur.buf.subarray(start, cur.pos).toString("utf8");
  if (cur.peek() === LBRACKET) {
    if (value === "") throw new ParseError("unexpected [");
    cur.pos++;
    const node: AtomNode = { type: "atom", value, section: parseSequence(cur, depth + 1, RBRACKET, true) };
    if (cur.peek() === LT) {
      const end = cur.buf.indexOf(">", cur.pos);
      if (end < 0) throw new ParseError("unterminated partial");
      const m = /^<(\d{1,10})\.(\d{1,10})>$/.exec(cur.buf.subarray(cur.pos, end + 1).toString("latin1"));
      if (!m) throw new ParseError("invalid partial, expected <start.length>");
      const length = Number(m[2]);
      if (length === 0) throw new ParseError("partial length must be positive");
      node.partial = { start: Number(m[1]), length };
      cur.pos = end + 1;
    }
    return node;
  }
  if (value === "") {
    if (cur.done) throw new ParseError("missing argument");
    throw new ParseError(`unexpected character ${JSON.stringify(String.fromCharCode(cur.peek()))}`);
  }
  return { type: "atom", value };
}
