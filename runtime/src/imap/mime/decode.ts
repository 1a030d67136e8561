/**
 * Decoding for SEARCH (RFC 3501 §6.4.4 compares decoded text): charsets via
 * iconv-lite, RFC 2047 encoded words, and Content-Transfer-Encoding of bodies.
 */
import iconv from "iconv-lite";

export function decodeBytes(bytes: Buffer, charset: string | undefined): string {
  const cs = (charset ?? "utf-8").trim().toLowerCase();
  if (cs === "utf-8" || cs === "utf8" || cs === "us-ascii" || cs === "ascii") return bytes.toString("utf8");
  if (iconv.encodingExists(cs)) return iconv.decode(bytes, cs);
  return bytes.toString("utf8");
}

/** Is `charset` one SEARCH CHARSET accepts? (RFC 3501 §6.4.4 [BADCHARSET]) */
export function knownCharset(charset: string): boolean {
  return iconv.encodingExists(charset.toLowerCase());
}

const ENCODED_WORD = /=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=/g;

/** RFC 2047: a header value (as latin1-held raw bytes) to text; raw 8-bit taken as UTF-8. */
export function decodeHeaderValue(raw: string): string {
  // whitespace between adjacent encoded words is dropped (RFC 2047 §6.2)
  const joined = raw.replace(/(=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=)\s+(?==\?)/g, "$1");
  let out = "";
  let last = 0;
  for (const m of joined.matchAll(ENCODED_WORD)) {
    out += decodeBytes(Buffer.from(joined.slice(last, m.index), "latin1"), "utf-8");
    const charset = m[1]!.split("*")[0]!;
    const data = m[3]!;
    let bytes: Buffer;
    if (m[2]!.toLowerCase() === "b") bytes = Buffer.from(data, "base64");
    else
      bytes = Buffer.from(
        data
          .replace(/_/g, " ")
          .replace(/=([0-9a-fA-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16))),
        "latin1",
      );
    out += decodeBytes(bytes, charset);
    last = (m.index ?? 0) + m[0].length;
  }
  out += decodeBytes(Buffer.from(joined.slice(last), "latin1"), "utf-8");
  return out;
}

export function decodeTransfer(body: Buffer, encoding: string | undefined): Buffer {
  const enc = (encoding ?? "").trim().toLowerCase();
  if (enc === "base64") return Buffer.from(body.toString("latin1").replace(/[^A-Za-z0-9+/=]/g, ""), "base64");
  if (enc === "quoted-printable") {
    const s = body.toString("latin1").replace(/=\r?\n/g, "");
    return Buffer.from(
      s.replace(/=([0-9a-fA-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16))),
      "latin1",
    );
  }
  return body;
}
