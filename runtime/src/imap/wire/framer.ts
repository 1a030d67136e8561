/**
 * Frames the client's byte stream into complete commands: lines, plus the
 * literals they announce (RFC 3501 §4.3 synchronizing "{n}", RFC 7888 LITERAL+
 * "{n+}"). Limits are checked before any literal byte is accepted, so an
 * oversized literal is refused without being read: for a synchronizing literal
 * no "+" is sent (the client must not send it, RFC 3501 §7.5); a
 * non-synchronizing one is already on its way, so the connection is closed
 * (RFC 7888 §4 allows that).
 */

export interface FramerLimits {
  /** Longest line (outside literals) in octets. */
  maxLineBytes: number;
  /** Largest single literal in octets. */
  maxLiteralBytes: number;
  /** Whole command (lines and literals) in octets. */
  maxCommandBytes: number;
}

export type FrameEvent =
  | { type: "command"; data: Buffer }
  /** A synchronizing literal was accepted: send a continuation request. */
  | { type: "continue" }
  | { type: "literal-too-large"; tag: string | undefined; size: number; sync: boolean }
  | { type: "line-too-long" };

const LF = 0x0a;
const LITERAL_AT_END = /\{(\d{1,20})(\+?)\}\r?\n$/;

export class CommandFramer {
  private parts: Buffer[] = [];
  private line: Buffer[] = [];
  private lineBytes = 0;
  private commandBytes = 0;
  private literalLeft = 0;
  /** Set after a fatal framing error: everything else is ignored. */
  private stopped = false;

  constructor(
    private readonly limits: FramerLimits,
    private readonly emit: (event: FrameEvent) => void,
  ) {}

  push(chunk: Buffer): void {
    let pos = 0;
    while (pos < chunk.length && !this.stopped) {
      if (this.literalLeft > 0) {
        const take = Math.min(this.literalLeft, chunk.length - pos);
        this.parts.push(chunk.subarray(pos, pos + take));
        this.literalLeft -= take;
        pos += take;
        continue;
      }
      const lf = chunk.indexOf(LF, pos);
      const end = lf < 0 ? chunk.length : lf + 1;
      const piece = chunk.subarray(pos, end);
      this.lineBytes += piece.length;
      if (this.lineBytes > this.limits.maxLineBytes + 2) {
        this.stopped = true;
        this.emit({ type: "line-too-long" });
        return;
      }
      this.line.push(piece);
      pos = end;
      if (lf >= 0) this.endLine();
    }
  }

  private endLine(): void {
    const line = this.line.length === 1 ? this.line[0]! : Buffer.concat(this.line);
    this.line = [];
    this.lineBytes = 0;
    this.commandBytes += line.length;
    // only the tail can announce a literal; look at a short suffix
    const tail = line.subarray(Math.max(0, line.length - 32)).toString("latin1");
    const m = LITERAL_AT_END.exec(tail);
    if (!m) {
      this.parts.push(line);
      const data = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts);
      this.parts = [];
      this.commandBytes = 0;
      this.emit({ type: "command", data: stripCrlf(data) });
      return;
    }
    const size = Number(m[1]);
    const sync = m[2] !== "+";
    this.parts.push(line);
    if (size > this.limits.maxLiteralBytes || this.commandBytes + size > this.limits.maxCommandBytes) {
      const first = this.parts[0]!;
      const sp = first.indexOf(0x20);
      const tag = sp > 0 ? first.subarray(0, Math.min(sp, 256)).toString("latin1") : undefined;
      this.parts = [];
      this.commandBytes = 0;
      // a non-synchronizing literal is already being sent: stop reading
      if (!sync) this.stopped = true;
      this.emit({ type: "literal-too-large", tag, size, sync });
      return;
    }
    this.commandBytes += size;
    this.literalLeft = size;
    if (sync) this.emit({ type: "continue" });
    if (size === 0) this.literalLeft = 0;
  }
}

function stripCrlf(b: Buffer): Buffer {
  let n = b.length;
  if (n > 0 && b[n - 1] === LF) n--;
  if (n > 0 && b[n - 1] === 0x0d) n--;
  return b.subarray(0, n);
}
