/**
 * One linear pass over a raw message's MIME structure (RFC 2045, RFC 2046),
 * feeding header and body-line events to the content checks, the way
 * Postfix's cleanup(8) feeds header_checks / mime_header_checks /
 * nested_header_checks / body_checks. Nothing is decoded: maps see the lines
 * as received.
 *
 * Cost: each line is looked at once; a boundary line is recognised by one Map
 * lookup whatever the nesting depth, and the walk stops at the first limit
 * exceeded — so a hostile structure (deep nesting, thousands of parts) costs
 * no more than its size.
 */

/** Postfix header_size_limit: a logical header longer than this is truncated for the checks. */
export const MAX_HEADER_CHARS = 102_400;

/** Headers Postfix treats as MIME headers (header_opts.c HDR_OPT_MIME). */
const MIME_HEADERS = new Set([
  "content-description",
  "content-disposition",
  "content-id",
  "content-transfer-encoding",
  "content-type",
  "mime-version",
]);

/**
 * primary: the message's own non-MIME headers (header_checks);
 * mime: MIME headers anywhere, top level included (mime_header_checks);
 * nested: non-MIME headers of parts and attached messages (nested_header_checks).
 */
export type HeaderClass = "primary" | "mime" | "nested";

export interface HeaderField {
  /** Lower-case field name. */
  name: string;
  /** The whole logical header, "Name: value", folded lines joined with "\n" (no CR), as Postfix sees it. */
  text: string;
  class: HeaderClass;
  depth: number;
  /** 0 for the message itself, then 1, 2 … in order of appearance. */
  part: number;
  /** Byte offsets of the whole field in the message, folded lines and the last CRLF included. */
  start: number;
  end: number;
}

export interface MimeVisitor {
  header?(field: HeaderField): void;
  /**
   * A body line without its CRLF, `part` as in HeaderField; `start`/`end` its byte
   * offsets (end past the CRLF). Boundary lines included, as in Postfix.
   */
  bodyLine?(line: string, part: number, start: number, end: number): void;
}

export interface WalkLimits {
  maxDepth: number;
  maxParts: number;
}

export interface WalkResult {
  parts: number;
  depth: number;
  /** Set when a limit was exceeded; the walk stopped there. */
  exceeded?: { limit: "depth" | "parts"; value: number; max: number };
}

interface Frame {
  boundary: string;
  depth: number;
  digest: boolean;
  /** The map entry this frame's boundary replaced (same boundary reused inside). */
  shadowed: number | undefined;
}

const BOUNDARY_PARAM = /;\s*boundary\s*=\s*(?:"((?:[^"\\\r\n]|\\.){1,200})"|([^\s;"]{1,200}))/i;

/** Media type and boundary of a Content-Type header's text. */
export function parseContentType(text: string): { type: string; boundary?: string } {
  const value = text.slice(text.indexOf(":") + 1);
  const semi = value.indexOf(";");
  const type = (semi < 0 ? value : value.slice(0, semi)).trim().toLowerCase();
  const m = semi < 0 ? null : BOUNDARY_PARAM.exec(value.slice(semi));
  const boundary = m ? (m[1] !== undefined ? m[1].replace(/\\(.)/g, "$1") : m[2]) : undefined;
  return boundary === undefined ? { type } : { type, boundary };
}

export function walkMime(message: Buffer, limits: WalkLimits, visitors: MimeVisitor[]): WalkResult {
  const headerVisitors = visitors.filter((v) => v.header);
  const bodyVisitors = visitors.filter((v) => v.bodyLine);
  const frames: Frame[] = [];
  const byBoundary = new Map<string, number>();
  let inHeaders = true;
  let depth = 0;
  let part = 0;
  let maxDepth = 0;
  let parts = 1;
  let entityNested = false; // headers of a part / attached message, not the primary ones
  let contentType: { type: string; boundary?: string } | undefined;
  let pending: string[] = [];
  let pendingChars = 0;
  let pendingStart = 0;
  let pendingEnd = 0;

  const flushHeader = (): void => {
    if (pending.length === 0) return;
    const text = pending.join("\n");
    pending = [];
    pendingChars = 0;
    const colon = text.indexOf(":");
    const name = (colon < 0 ? text : text.slice(0, colon)).trim().toLowerCase();
    if (name === "content-type") contentType = parseContentType(text);
    const klass: HeaderClass = MIME_HEADERS.has(name) ? "mime" : entityNested ? "nested" : "primary";
    const field: HeaderField = {
      name,
      text,
      class: klass,
      depth,
      part,
      start: pendingStart,
      end: pendingEnd,
    };
    for (const v of headerVisitors) v.header!(field);
  };

  const stop = (limit: "depth" | "parts", value: number, max: number): WalkResult => ({
    parts,
    depth: maxDepth,
    exceeded: { limit, value, max },
  });

  /** Starts a new entity (part or attached message) at `d`; false when a limit is hit. */
  const beginEntity = (d: number, digest: boolean): WalkResult | undefined => {
    parts++;
    part++;
    depth = d;
    maxDepth = Math.max(maxDepth, d);
    if (d > limits.maxDepth) return stop("depth", d, limits.maxDepth);
    if (parts > limits.maxParts) return stop("parts", parts, limits.maxParts);
    inHeaders = true;
    entityNested = true;
    // RFC 2046 §5.1.5: in multipart/digest the default type is message/rfc822.
    contentType = digest ? { type: "message/rfc822" } : undefined;
    return undefined;
  };

  /** Headers ended: decide how the entity's body is read. */
  const endHeaders = (): WalkResult | undefined => {
    flushHeader();
    inHeaders = false;
    const ct = contentType;
    if (ct?.type.startsWith("multipart/") && ct.boundary) {
      const shadowed = byBoundary.get(ct.boundary);
      frames.push({ boundary: ct.boundary, depth, digest: ct.type === "multipart/digest", shadowed });
      byBoundary.set(ct.boundary, frames.length - 1);
      if (depth + 1 > limits.maxDepth) return stop("depth", depth + 1, limits.maxDepth);
    } else if (ct?.type === "message/rfc822" || ct?.type === "message/global") {
      return beginEntity(depth + 1, false);
    }
    return undefined;
  };

  const popTo = (index: number): void => {
    while (frames.length > index) {
      const f = frames.pop()!;
      if (f.shadowed === undefined) byBoundary.delete(f.boundary);
      else byBoundary.set(f.boundary, f.shadowed);
    }
  };

  const len = message.length;
  let start = 0;
  while (start < len) {
    let nl = message.indexOf(10, start);
    if (nl < 0) nl = len;
    const end = nl > start && message[nl - 1] === 13 ? nl - 1 : nl;
    const next = nl + 1;

    if (inHeaders) {
      if (end === start) {
        const r = endHeaders();
        if (r) return r;
        start = next;
        continue;
      }
      const line = message.toString("utf8", start, end);
      const c = message[start];
      if ((c === 32 || c === 9) && pending.length > 0) {
        if (pendingChars < MAX_HEADER_CHARS) {
          pending.push(line);
          pendingChars += line.length + 1; // and the "\n" that joins it
        }
        pendingEnd = Math.min(next, len);
      } else if (line.includes(":")) {
        flushHeader();
        pending.push(line);
        pendingChars = line.length;
        pendingStart = start;
        pendingEnd = Math.min(next, len);
      } else {
        // Not a header (RFC 5322 §2.2): the body started without the blank line.
        const r = endHeaders();
        if (r) return r;
        continue; // re-read this line as body
      }
      start = next;
      continue;
    }

    // Body line. Only lines that start with "--" can be boundaries (RFC 2046 §5.1.1).
    let line: string | undefined;
    if (frames.length > 0 && end - start >= 3 && message[start] === 45 && message[start + 1] === 45) {
      line = message.toString("utf8", start, end);
      const candidate = line.slice(2).replace(/[ \t]+$/, "");
      let index = byBoundary.get(candidate);
      let close = false;
      if (index === undefined && candidate.endsWith("--")) {
        index = byBoundary.get(candidate.slice(0, -2));
        close = index !== undefined;
      }
      if (index !== undefined) {
        for (const v of bodyVisitors) v.bodyLine!(line, part, start, Math.min(next, len));
        const frame = frames[index]!;
        if (close) {
          popTo(index);
          depth = frame.depth;
        } else {
          popTo(index + 1);
          const r = beginEntity(frame.depth + 1, frame.digest);
          if (r) return r;
        }
        start = next;
        continue;
      }
    }
    if (bodyVisitors.length > 0) {
      line ??= message.toString("utf8", start, end);
      for (const v of bodyVisitors) v.bodyLine!(line, part, start, Math.min(next, len));
    }
    start = next;
  }
  if (inHeaders) flushHeader();
  return { parts, depth: maxDepth };
}
