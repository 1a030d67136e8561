/**
 * Header block parsing (RFC 5322 §2.2) over raw bytes: field names, raw
 * (folded) lines with their byte ranges, and structured parameters
 * (RFC 2045 §5.1 Content-Type, RFC 2183 Content-Disposition, RFC 2231
 * continuations).
 */

export interface HeaderField {
  /** Lower-cased field name. */
  key: string;
  /** The raw lines of the field including folding and the final CRLF. */
  raw: Buffer;
  /** Unfolded value, bytes as latin1 characters (decode with decodeBytes). */
  value: string;
}

export function parseHeaderBlock(header: Buffer): HeaderField[] {
  const fields: HeaderField[] = [];
  let pos = 0;
  let current: { start: number; end: number } | null = null;
  const push = (): void => {
    if (!current) return;
    const raw = header.subarray(current.start, current.end);
    const text = raw.toString("latin1");
    const colon = text.indexOf(":");
    if (colon > 0) {
      const key = text.slice(0, colon).trim().toLowerCase();
      const value = text
        .slice(colon + 1)
        .replace(/\r?\n(?=[ \t])/g, "")
        .replace(/\r?\n$/, "")
        .trim();
      if (/^[\x21-\x39\x3b-\x7e]+$/.test(key)) fields.push({ key, raw, value });
    }
    current = null;
  };
  while (pos < header.length) {
    let lf = header.indexOf(0x0a, pos);
    if (lf < 0) lf = header.length - 1;
    const first = header[pos];
    const lineEnd = lf + 1;
    const empty = first === 0x0a || (first === 0x0d && header[pos + 1] === 0x0a);
    if (empty) break;
    if ((first === 0x20 || first === 0x09) && current) current.end = lineEnd;
    else {
      push();
      current = { start: pos, end: lineEnd };
    }
    pos = lineEnd;
  }
  push();
  return fields;
}

export interface StructuredValue {
  value: string;
  params: Array<[string, string]>;
}

/** "text/plain; charset=utf-8; name*0=..." → value and parameters (RFC 2231 joined, not charset-decoded). */
export function parseStructured(input: string): StructuredValue {
  const parts = splitUnquoted(input, ";");
  const value = (parts.shift() ?? "").trim();
  const raw: Array<[string, string]> = [];
  for (const part of parts) {
    const eq = part.indexOf("=");
    if (eq < 0) continue;
    const key = part.slice(0, eq).trim().toLowerCase();
    let val = part.slice(eq + 1).trim();
    if (val.startsWith('"')) {
      val = val.slice(1, val.endsWith('"') && val.length > 1 ? -1 : undefined).replace(/\\(.)/g, "$1");
    }
    if (key) raw.push([key, val]);
  }
  // RFC 2231 §3 continuations: name*0, name*1 … (and name*0* for encoded pieces)
  const params: Array<[string, string]> = [];
  const continued = new Map<string, Array<{ n: number; v: string }>>();
  for (const [k, v] of raw) {
    const m = /^(.+?)\*(\d+)\*?$/.exec(k);
    if (m) {
      const list = continued.get(m[1]!) ?? [];
      list.push({ n: Number(m[2]), v });
      continued.set(m[1]!, list);
    } else params.push([k, v]);
  }
  for (const [k, list] of continued) {
    list.sort((a, b) => a.n - b.n);
    const encoded = raw.some(([rk]) => rk === `${k}*0*`);
    params.push([encoded ? `${k}*` : k, list.map((x) => x.v).join("")]);
  }
  return { value, params };
}

function splitUnquoted(s: string, sep: string): string[] {
  const out: string[] = [];
  let cur = "";
  let quoted = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === "\\" && quoted) {
      cur += c + (s[i + 1] ?? "");
      i++;
      continue;
    }
    if (c === '"') quoted = !quoted;
    if (c === sep && !quoted) {
      out.push(cur);
      cur = "";
    } else cur += c;
  }
  out.push(cur);
  return out;
}

/** Strips RFC 5322 comments "(…)" outside quoted strings. */
export function stripComments(s: string): string {
  let out = "";
  let depth = 0;
  let quoted = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === "\\") {
      if (depth === 0) out += c + (s[i + 1] ?? "");
      i++;
      continue;
    }
    if (c === '"' && depth === 0) quoted = !quoted;
    if (!quoted && c === "(") depth++;
    else if (!quoted && c === ")" && depth > 0) depth--;
    else if (depth === 0) out += c;
  }
  return out;
}
