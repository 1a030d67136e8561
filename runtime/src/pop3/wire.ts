/**
 * The POP3 wire format (RFC 1939 §3), knowing nothing of commands: CRLF lines
 * in, with a length limit; single-line responses and dot-stuffed multi-line
 * responses out.
 */

export type LineEvent = { type: "line"; line: string } | { type: "overflow" };

/** Splits a byte stream into lines (CRLF, or bare LF from sloppy clients). */
export class LineReader {
  private buffer: Buffer = Buffer.alloc(0);

  constructor(private readonly maxLineBytes: number) {}

  push(chunk: Buffer): LineEvent[] {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    const out: LineEvent[] = [];
    for (;;) {
      const lf = this.buffer.indexOf(10);
      if (lf < 0) {
        if (this.buffer.length > this.maxLineBytes + 1) {
          this.buffer = Buffer.alloc(0);
          out.push({ type: "overflow" });
        }
        return out;
      }
      let end = lf;
      if (end > 0 && this.buffer[end - 1] === 13) end -= 1;
      if (end > this.maxLineBytes) {
        out.push({ type: "overflow" });
      } else {
        // latin1 keeps every byte as one char: binary garbage is an unknown command, not a decode error.
        out.push({ type: "line", line: this.buffer.subarray(0, end).toString("latin1") });
      }
      this.buffer = this.buffer.subarray(lf + 1);
    }
  }

  /** RFC 2595 §4: bytes a client sent after STLS before the handshake must be thrown away. */
  discard(): void {
    this.buffer = Buffer.alloc(0);
  }
}

export interface ParsedCommand {
  verb: string;
  args: string[];
  /** Everything after the verb and one space (PASS: passwords may hold spaces, RFC 1939 §7). */
  rest: string;
}

/** RFC 1939 §3: a keyword of 3–4 characters, then arguments separated by single spaces. */
export function parseCommand(line: string): ParsedCommand | null {
  const m = /^([A-Za-z]{3,4})(?: (.*))?$/.exec(line);
  if (!m) return null;
  const rest = m[2] ?? "";
  const args = rest === "" ? [] : rest.split(" ");
  return { verb: (m[1] as string).toUpperCase(), args, rest };
}

/** RFC 1939 §3: "+OK"/"-ERR" and one line of text, never a CR or LF inside. */
export function statusLine(ok: boolean, text: string): string {
  return `${ok ? "+OK" : "-ERR"}${text ? ` ${text.replace(/[\r\n]+/g, " ")}` : ""}\r\n`;
}

/** A multi-line body: each line starting with "." gets another "." (RFC 1939 §3), ended by ".". */
export function dotStuff(body: Buffer): Buffer {
  const parts: Buffer[] = [];
  let start = 0;
  if (body.length > 0 && body[0] === 46) parts.push(Buffer.from("."));
  for (let i = body.indexOf("\n.", 0); i >= 0; i = body.indexOf("\n.", i + 2)) {
    parts.push(body.subarray(start, i + 1), Buffer.from("."));
    start = i + 1;
  }
  parts.push(body.subarray(start));
  const last = body.length === 0 ? "" : body.subarray(-2).toString("latin1");
  parts.push(Buffer.from(last === "\r\n" || body.length === 0 ? ".\r\n" : "\r\n.\r\n"));
  return Buffer.concat(parts);
}

/** TOP (RFC 1939 §7): the header, the blank line, and the first `lines` lines of the body. */
export function topOf(message: Buffer, lines: number): Buffer {
  let end = message.indexOf("\r\n\r\n");
  if (end < 0) return message;
  end += 4;
  let pos = end;
  for (let i = 0; i < lines && pos < message.length; i++) {
    const lf = message.indexOf(10, pos);
    pos = lf < 0 ? message.length : lf + 1;
  }
  return message.subarray(0, pos);
}
