/**
 * Modified UTF-7 for mailbox names (RFC 3501 §5.1.3): printable US-ASCII stands
 * for itself except "&", which is written "&-"; everything else is UTF-16BE,
 * base64 with "," instead of "/", between "&" and "-".
 */

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

function isDirect(code: number): boolean {
  return code >= 0x20 && code <= 0x7e;
}

export function encodeMailboxName(name: string): string {
  let out = "";
  let pending: number[] = [];
  const flush = (): void => {
    if (pending.length === 0) return;
    const bytes = Buffer.alloc(pending.length * 2);
    pending.forEach((u, i) => {
      bytes.writeUInt16BE(u, i * 2);
    });
    out += `&${bytes.toString("base64").replace(/=+$/, "").replace(/\//g, ",")}-`;
    pending = [];
  };
  for (let i = 0; i < name.length; i++) {
    const code = name.charCodeAt(i);
    if (isDirect(code)) {
      flush();
      out += code === 0x26 ? "&-" : name[i];
    } else {
      pending.push(code);
    }
  }
  flush();
  return out;
}

export class Utf7Error extends Error {}

/** Throws Utf7Error on a malformed name (bad base64, unterminated shift, direct chars encoded). */
export function decodeMailboxName(name: string): string {
  let out = "";
  for (let i = 0; i < name.length; i++) {
    const ch = name[i]!;
    const code = name.charCodeAt(i);
    if (code > 0x7e || code < 0x20) throw new Utf7Error("8-bit or control character in mailbox name");
    if (ch !== "&") {
      out += ch;
      continue;
    }
    const end = name.indexOf("-", i + 1);
    if (end < 0) throw new Utf7Error("unterminated &-sequence");
    const b64 = name.slice(i + 1, end);
    i = end;
    if (b64 === "") {
      out += "&";
      continue;
    }
    for (const c of b64) if (!B64.includes(c)) throw new Utf7Error("bad base64 in mailbox name");
    const bytes = Buffer.from(b64.replace(/,/g, "/"), "base64");
    if (bytes.length % 2 !== 0) throw new Utf7Error("odd UTF-16 length");
    let chunk = "";
    for (let j = 0; j < bytes.length; j += 2) chunk += String.fromCharCode(bytes.readUInt16BE(j));
    for (const c of chunk) {
      const cp = c.codePointAt(0)!;
      if (isDirect(cp)) throw new Utf7Error("printable ASCII must not be encoded");
    }
    out += chunk;
  }
  return out;
}
