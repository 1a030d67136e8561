/**
 * Response compiler (RFC 3501 §7, §9 "response"): values in, wire bytes out.
 * Strings are sent quoted when the quoted form can carry them (7-bit, no
 * CR/LF, short), otherwise as literals; `{ literal }` always sends a literal
 * (message bodies); `{ atom }` is sent as is (flags, keywords, labels).
 */

export type Value =
  | number
  | null
  | string
  | Buffer
  | { atom: string }
  | { literal: Buffer }
  /** Values written back to back: RFC 3501's 1*body and 1*address have no SP between items. */
  | { concat: Value[] }
  /** Already compiled wire bytes (from the message cache). */
  | { raw: Buffer }
  | Value[];

export const NIL = null;

export function atom(text: string): { atom: string } {
  return { atom: text };
}

/** Longest string sent in quoted form. */
const MAX_QUOTED = 1024;

function canQuote(b: Buffer): boolean {
  if (b.length > MAX_QUOTED) return false;
  for (let i = 0; i < b.length; i++) {
    const c = b[i]!;
    if (c === 0x0a || c === 0x0d || c === 0 || c > 0x7e) return false;
  }
  return true;
}

function quote(b: Buffer): string {
  let s = '"';
  for (let i = 0; i < b.length; i++) {
    const c = b[i]!;
    if (c === 0x22 || c === 0x5c) s += "\\";
    s += String.fromCharCode(c);
  }
  return `${s}"`;
}

class Out {
  chunks: Buffer[] = [];
  text = "";
  str(s: string): void {
    this.text += s;
  }
  buf(b: Buffer): void {
    if (this.text) {
      this.chunks.push(Buffer.from(this.text, "latin1"));
      this.text = "";
    }
    this.chunks.push(b);
  }
  done(): Buffer {
    if (this.text) this.chunks.push(Buffer.from(this.text, "latin1"));
    return this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
  }
}

function write(out: Out, v: Value): void {
  if (v === null) out.str("NIL");
  else if (typeof v === "number") out.str(String(Math.trunc(v)));
  else if (typeof v === "string" || Buffer.isBuffer(v)) {
    const b = typeof v === "string" ? Buffer.from(v, "utf8") : v;
    if (canQuote(b)) out.str(quote(b));
    else {
      out.str(`{${b.length}}\r\n`);
      out.buf(b);
    }
  } else if (Array.isArray(v)) {
    out.str("(");
    v.forEach((item, i) => {
      if (i > 0) out.str(" ");
      write(out, item);
    });
    out.str(")");
  } else if ("raw" in v) {
    out.buf(v.raw);
  } else if ("concat" in v) {
    for (const item of v.concat) write(out, item);
  } else if ("atom" in v) {
    // atoms are ASCII by construction except UTF-8 keywords; keep bytes intact
    out.buf(Buffer.from(v.atom, "utf8"));
  } else {
    out.str(`{${v.literal.length}}\r\n`);
    out.buf(v.literal);
  }
}

/** Space-separated values, no CRLF. */
export function compile(values: Value[]): Buffer {
  const out = new Out();
  values.forEach((v, i) => {
    if (i > 0) out.str(" ");
    write(out, v);
  });
  return out.done();
}

/** "* " values CRLF */
export function untagged(values: Value[]): Buffer {
  return Buffer.concat([Buffer.from("* "), compile(values), Buffer.from("\r\n")]);
}

/** Quoted-or-literal form of one string, as text (for short, known-ASCII values). */
export function astringText(s: string): string {
  return compile([s]).toString("latin1");
}
