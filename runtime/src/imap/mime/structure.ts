/**
 * MIME structure over the raw message bytes (RFC 2045, RFC 2046 §5.1 multipart
 * boundaries, §5.2.1 message/rfc822). Every part keeps exact byte offsets, so
 * BODY[section] is served from the original bytes and BODYSTRUCTURE sizes are
 * octet-exact.
 */
import { type HeaderField, parseHeaderBlock, parseStructured, stripComments } from "./header.js";

/** Parts nested deeper than this are treated as opaque bodies (mail bombs). */
export const MAX_MIME_DEPTH = 50;
/** More parts than this in one message: the rest are treated as opaque. */
export const MAX_MIME_PARTS = 5000;

export interface MimePart {
  /** Offset of the first header byte. */
  start: number;
  /** Offset of the first body byte (after the blank line). */
  bodyStart: number;
  /** Offset after the last body byte. */
  end: number;
  headers: HeaderField[];
  type: string;
  subtype: string;
  params: Array<[string, string]>;
  /** Multipart children. */
  children: MimePart[];
  /** message/rfc822: the encapsulated message. */
  message?: MimePart;
}

export function header(part: MimePart, key: string): string | undefined {
  return part.headers.find((h) => h.key === key)?.value;
}

export function param(part: MimePart, key: string): string | undefined {
  return part.params.find(([k]) => k === key)?.[1];
}

export function parseMime(buf: Buffer): MimePart {
  const counter = { parts: 0 };
  return parsePart(buf, 0, buf.length, 0, "text/plain", counter);
}

function findHeaderEnd(buf: Buffer, start: number, end: number): number {
  // the body starts after the first empty line; a part may begin with it
  let pos = start;
  while (pos < end) {
    if (buf[pos] === 0x0a) return pos + 1;
    if (buf[pos] === 0x0d && buf[pos + 1] === 0x0a) return pos + 2;
    const lf = buf.indexOf(0x0a, pos);
    if (lf < 0 || lf >= end) return end;
    pos = lf + 1;
  }
  return end;
}

function parsePart(
  buf: Buffer,
  start: number,
  end: number,
  depth: number,
  defaultType: string,
  counter: { parts: number },
): MimePart {
  counter.parts++;
  const bodyStart = findHeaderEnd(buf, start, end);
  const headers = parseHeaderBlock(buf.subarray(start, bodyStart));
  const ctRaw = headers.find((h) => h.key === "content-type")?.value;
  let type = defaultType.split("/")[0]!;
  let subtype = defaultType.split("/")[1]!;
  let params: Array<[string, string]> = [];
  if (ctRaw) {
    const ct = parseStructured(stripComments(ctRaw));
    const m = /^([^/\s]+)\s*\/\s*([^\s]+)$/.exec(ct.value);
    if (m) {
      type = m[1]!.toLowerCase();
      subtype = m[2]!.toLowerCase();
      params = ct.params;
    } else if (ct.value) {
      // RFC 2045 §5.2: an invalid Content-Type means text/plain; charset=us-ascii
      type = "text";
      subtype = "plain";
      params = [["charset", "us-ascii"]];
    } else params = ct.params;
  }
  // RFC 2045 §5.2 default charset, spelled out the way Dovecot and Cyrus do
  if (type === "text" && !params.some(([k]) => k === "charset"))
    params = [...params, ["charset", "us-ascii"]];
  const part: MimePart = { start, bodyStart, end, headers, type, subtype, params, children: [] };
  if (depth >= MAX_MIME_DEPTH || counter.parts > MAX_MIME_PARTS) return part;
  if (type === "multipart") {
    const boundary = params.find(([k]) => k === "boundary")?.[1];
    if (boundary) {
      const childDefault = subtype === "digest" ? "message/rfc822" : "text/plain";
      for (const [s, e] of splitMultipart(buf, bodyStart, end, boundary)) {
        part.children.push(parsePart(buf, s, e, depth + 1, childDefault, counter));
      }
    }
  } else if (type === "message" && (subtype === "rfc822" || subtype === "global")) {
    part.message = parsePart(buf, bodyStart, end, depth + 1, "text/plain", counter);
  }
  return part;
}

/** Byte ranges of the body parts between boundary delimiter lines (RFC 2046 §5.1.1). */
export function splitMultipart(
  buf: Buffer,
  start: number,
  end: number,
  boundary: string,
): Array<[number, number]> {
  const delim = Buffer.from(`--${boundary}`, "latin1");
  const ranges: Array<[number, number]> = [];
  let partStart = -1;
  let pos = start;
  while (pos < end) {
    const at = buf.indexOf(delim, pos);
    if (at < 0 || at + delim.length > end) break;
    const lineStart = at === start || buf[at - 1] === 0x0a;
    if (!lineStart) {
      pos = at + delim.length;
      continue;
    }
    const after = at + delim.length;
    const close = buf[after] === 0x2d && buf[after + 1] === 0x2d;
    // the rest of the delimiter line may only be whitespace (transport padding)
    let p = close ? after + 2 : after;
    while (p < end && (buf[p] === 0x20 || buf[p] === 0x09)) p++;
    const eol = p >= end || buf[p] === 0x0d || buf[p] === 0x0a;
    if (!eol) {
      pos = after;
      continue;
    }
    if (partStart >= 0) {
      // the CRLF before the delimiter belongs to the delimiter
      let partEnd = at;
      if (partEnd > partStart && buf[partEnd - 1] === 0x0a) partEnd--;
      if (partEnd > partStart && buf[partEnd - 1] === 0x0d) partEnd--;
      ranges.push([partStart, Math.max(partStart, partEnd)]);
    }
    if (close) return ranges;
    let next = p;
    if (buf[next] === 0x0d) next++;
    if (buf[next] === 0x0a) next++;
    partStart = next;
    pos = next;
  }
  // no close delimiter: the last part runs to the end
  if (partStart >= 0 && partStart <= end) ranges.push([partStart, end]);
  return ranges;
}

/** Number of lines in a body (RFC 3501 body-fld-lines): its line ends, as Dovecot and Cyrus count them. */
export function countLines(buf: Buffer, start: number, end: number): number {
  let n = 0;
  let pos = start;
  for (;;) {
    const lf = buf.indexOf(0x0a, pos);
    if (lf < 0 || lf >= end) break;
    n++;
    pos = lf + 1;
  }
  return n;
}
