/**
 * BODY[section]<partial> (RFC 3501 §6.4.5): part numbers, HEADER,
 * HEADER.FIELDS (…), HEADER.FIELDS.NOT (…), TEXT and MIME, cut from the raw
 * message bytes.
 */
import { type MimePart, parseMime } from "./structure.js";

export interface SectionSpec {
  /** Part numbers, e.g. [1, 2] for "1.2"; empty for the whole message. */
  path: number[];
  specifier: "" | "HEADER" | "HEADER.FIELDS" | "HEADER.FIELDS.NOT" | "TEXT" | "MIME";
  /** Upper-cased names for HEADER.FIELDS(.NOT). */
  fields: string[];
}

/** The part a section path points at, or undefined when there is none. */
export function resolvePart(root: MimePart, path: number[]): MimePart | undefined {
  let cur: MimePart = root;
  for (let i = 0; i < path.length; i++) {
    const n = path[i]!;
    let container: MimePart = cur;
    // a message/rfc822 part below the top: its numbers address the encapsulated message
    if (i > 0 && cur.type === "message" && cur.message) container = cur.message;
    if (container.type === "multipart") {
      const child = container.children[n - 1];
      if (!child) return undefined;
      cur = child;
    } else {
      // a non-multipart message has one part, numbered 1; a leaf part has none
      if (n !== 1 || (i > 0 && container === cur)) return undefined;
      cur = container;
    }
  }
  return cur;
}

function headerFields(_buf: Buffer, part: MimePart, fields: string[], not: boolean): Buffer {
  const wanted = new Set(fields.map((f) => f.toLowerCase()));
  const chunks: Buffer[] = [];
  for (const h of part.headers) if (wanted.has(h.key) !== not) chunks.push(h.raw);
  chunks.push(Buffer.from("\r\n"));
  return Buffer.concat(chunks);
}

/** The bytes of a section (before any partial is applied); empty when it does not exist. */
export function sectionBytes(buf: Buffer, spec: SectionSpec, root: MimePart = parseMime(buf)): Buffer {
  const part = resolvePart(root, spec.path);
  if (!part) return Buffer.alloc(0);
  if (spec.specifier === "MIME") {
    if (spec.path.length === 0) return Buffer.alloc(0);
    return buf.subarray(part.start, part.bodyStart);
  }
  if (spec.specifier === "") {
    if (spec.path.length === 0) return buf;
    return buf.subarray(part.bodyStart, part.end);
  }
  // HEADER / HEADER.FIELDS / TEXT: of the message itself, or of an encapsulated message/rfc822
  let msg: MimePart | undefined = part;
  if (spec.path.length > 0) msg = part.type === "message" ? part.message : undefined;
  if (!msg) return Buffer.alloc(0);
  switch (spec.specifier) {
    case "HEADER":
      return buf.subarray(msg.start, msg.bodyStart);
    case "HEADER.FIELDS":
      return headerFields(buf, msg, spec.fields, false);
    case "HEADER.FIELDS.NOT":
      return headerFields(buf, msg, spec.fields, true);
    case "TEXT":
      return buf.subarray(msg.bodyStart, msg.end);
  }
}

/** RFC 3501 §6.4.5 <partial>: past the end gives an empty string. */
export function applyPartial(bytes: Buffer, partial: { start: number; length: number } | undefined): Buffer {
  if (!partial) return bytes;
  if (partial.start >= bytes.length) return Buffer.alloc(0);
  return bytes.subarray(partial.start, partial.start + partial.length);
}
