/**
 * RFC 5322 §3.4 address lists for ENVELOPE (RFC 3501 §7.4.2): mailboxes,
 * display names, route-addr, and groups (a group start is [NIL NIL name NIL],
 * its end [NIL NIL NIL NIL]). Values stay as raw header text (encoded words
 * are not decoded, as other servers do).
 */

export interface EnvelopeAddress {
  name: string | null;
  adl: string | null;
  mailbox: string | null;
  host: string | null;
}

type Tok = { t: "word"; v: string } | { t: "quoted"; v: string } | { t: "special"; v: string };

function tokenize(s: string): Tok[] {
  const toks: Tok[] = [];
  let i = 0;
  while (i < s.length) {
    const c = s[i]!;
    if (c === " " || c === "\t" || c === "\r" || c === "\n") {
      i++;
    } else if (c === "(") {
      let depth = 0;
      for (; i < s.length; i++) {
        if (s[i] === "\\") i++;
        else if (s[i] === "(") depth++;
        else if (s[i] === ")" && --depth === 0) {
          i++;
          break;
        }
      }
    } else if (c === '"') {
      let v = "";
      i++;
      while (i < s.length && s[i] !== '"') {
        if (s[i] === "\\" && i + 1 < s.length) i++;
        v += s[i];
        i++;
      }
      i++;
      toks.push({ t: "quoted", v });
    } else if ("<>@,;:.[]".includes(c)) {
      if (c === "[") {
        const end = s.indexOf("]", i);
        const v = end < 0 ? s.slice(i) : s.slice(i, end + 1);
        toks.push({ t: "word", v });
        i = end < 0 ? s.length : end + 1;
      } else {
        toks.push({ t: "special", v: c });
        i++;
      }
    } else {
      let v = "";
      while (i < s.length && !' \t\r\n()"<>@,;:.[]'.includes(s[i]!)) v += s[i++];
      toks.push({ t: "word", v });
    }
  }
  return toks;
}

/** Joins phrase tokens as words separated by spaces, dots kept tight. */
function phrase(toks: Tok[]): string {
  let out = "";
  for (const t of toks) {
    if (t.t === "special" && t.v === ".") out += ".";
    else out += (out && !out.endsWith(".") ? " " : "") + t.v;
  }
  return out;
}

function addrSpec(toks: Tok[]): { mailbox: string | null; host: string | null; adl: string | null } {
  let adl: string | null = null;
  // obs-route: "@a,@b:" before the addr-spec
  const colon = toks.findIndex((t) => t.t === "special" && t.v === ":");
  if (colon >= 0 && toks[0]?.t === "special" && toks[0].v === "@") {
    adl = toks
      .slice(0, colon)
      .map((t) => t.v)
      .join("");
    toks = toks.slice(colon + 1);
  }
  const at = toks.findIndex((t) => t.t === "special" && t.v === "@");
  const local = at < 0 ? toks : toks.slice(0, at);
  const domain = at < 0 ? [] : toks.slice(at + 1);
  const join = (ts: Tok[]): string =>
    ts.map((t) => (t.t === "quoted" && /[\s"\\(),:;<>@[\]]/.test(t.v) ? `"${t.v}"` : t.v)).join("");
  return { mailbox: local.length ? join(local) : null, host: domain.length ? join(domain) : null, adl };
}

function mailbox(toks: Tok[]): EnvelopeAddress | null {
  if (toks.length === 0) return null;
  const lt = toks.findIndex((t) => t.t === "special" && t.v === "<");
  if (lt >= 0) {
    const gt = toks.findIndex((t, i) => i > lt && t.t === "special" && t.v === ">");
    const inner = toks.slice(lt + 1, gt < 0 ? undefined : gt);
    const name = phrase(toks.slice(0, lt));
    const spec = addrSpec(inner);
    return { name: name || null, adl: spec.adl, mailbox: spec.mailbox, host: spec.host };
  }
  const spec = addrSpec(toks);
  // RFC 3501: a missing host in an address is NIL; a bare word is a local mailbox
  return { name: null, adl: null, mailbox: spec.mailbox, host: spec.host };
}

export function parseAddressList(value: string): EnvelopeAddress[] {
  const toks = tokenize(value);
  const out: EnvelopeAddress[] = [];
  let cur: Tok[] = [];
  let angle = 0;
  let inGroup = false;
  const flush = (): void => {
    const a = mailbox(cur);
    if (a && (a.mailbox || a.host)) out.push(a);
    cur = [];
  };
  for (const t of toks) {
    if (t.t === "special" && t.v === "<") angle++;
    if (t.t === "special" && t.v === ">") angle = Math.max(0, angle - 1);
    if (angle === 0 && t.t === "special" && t.v === ":" && !inGroup && !cur.some((x) => x.v === "<")) {
      // group start (RFC 3501: [NIL NIL "group name" NIL])
      if (cur.length > 0 && !(cur[0]?.t === "special" && cur[0].v === "@")) {
        out.push({ name: null, adl: null, mailbox: phrase(cur), host: null });
        cur = [];
        inGroup = true;
        continue;
      }
    }
    if (angle === 0 && t.t === "special" && t.v === ";" && inGroup) {
      flush();
      out.push({ name: null, adl: null, mailbox: null, host: null });
      inGroup = false;
      continue;
    }
    if (angle === 0 && t.t === "special" && t.v === ",") {
      flush();
      continue;
    }
    cur.push(t);
  }
  flush();
  if (inGroup) out.push({ name: null, adl: null, mailbox: null, host: null });
  return out;
}
