/**
 * BODY and BODYSTRUCTURE (RFC 3501 §7.4.2): body-type-1part / body-type-mpart
 * with the extension data of BODYSTRUCTURE (md5, disposition, language,
 * location; for multiparts: parameters, disposition, language, location).
 */
import type { Value } from "../wire/compiler.js";
import { envelope } from "./envelope.js";
import { parseStructured, stripComments } from "./header.js";
import { countLines, header, type MimePart } from "./structure.js";

function nstr(v: string | undefined): Value {
  return v === undefined || v === "" ? null : Buffer.from(v, "latin1");
}

function paramList(params: Array<[string, string]>): Value {
  if (params.length === 0) return null;
  const out: Value[] = [];
  for (const [k, v] of params) out.push(Buffer.from(k.toUpperCase(), "latin1"), Buffer.from(v, "latin1"));
  return out;
}

function disposition(part: MimePart): Value {
  const raw = header(part, "content-disposition");
  if (!raw) return null;
  const d = parseStructured(stripComments(raw));
  if (!d.value) return null;
  return [Buffer.from(d.value, "latin1"), paramList(d.params)];
}

function language(part: MimePart): Value {
  const raw = header(part, "content-language");
  if (!raw) return null;
  const langs = stripComments(raw)
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  if (langs.length === 0) return null;
  return langs.length === 1 ? Buffer.from(langs[0]!, "latin1") : langs.map((l) => Buffer.from(l, "latin1"));
}

function trimmed(part: MimePart, key: string): string | undefined {
  const v = header(part, key);
  return v === undefined ? undefined : stripComments(v).trim();
}

export function bodyStructure(buf: Buffer, part: MimePart, extended: boolean): Value {
  if (part.type === "multipart") {
    const bodies: Value[] = part.children.map((child) => bodyStructure(buf, child, extended));
    // RFC 3501 requires at least one part: describe an empty text part (as Dovecot does)
    if (bodies.length === 0)
      bodies.push(["text", "plain", ["charset", "us-ascii"], null, null, "7bit", 0, 0]);
    // body-type-mpart = 1*body SP media-subtype: no SP between the bodies
    const out: Value[] = [{ concat: bodies }];
    out.push(Buffer.from(part.subtype.toUpperCase(), "latin1"));
    if (extended)
      out.push(
        paramList(part.params),
        disposition(part),
        language(part),
        nstr(header(part, "content-location")),
      );
    return out;
  }
  const size = part.end - part.bodyStart;
  const encoding = trimmed(part, "content-transfer-encoding")?.toUpperCase() || "7BIT";
  const out: Value[] = [
    Buffer.from(part.type.toUpperCase(), "latin1"),
    Buffer.from(part.subtype.toUpperCase(), "latin1"),
    paramList(part.params),
    nstr(trimmed(part, "content-id")),
    nstr(header(part, "content-description")),
    Buffer.from(encoding, "latin1"),
    size,
  ];
  if (part.type === "message" && part.message) {
    out.push(
      envelope(part.message),
      bodyStructure(buf, part.message, extended),
      countLines(buf, part.bodyStart, part.end),
    );
  } else if (part.type === "text") {
    out.push(countLines(buf, part.bodyStart, part.end));
  }
  if (extended)
    out.push(
      nstr(trimmed(part, "content-md5")),
      disposition(part),
      language(part),
      nstr(header(part, "content-location")),
    );
  return out;
}
