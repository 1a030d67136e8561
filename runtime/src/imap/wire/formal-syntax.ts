/**
 * Character classes of RFC 3501 §9 (formal syntax), named after its ABNF rules.
 */

/** CTL = %x00-1F / %x7F */
export function isCtl(c: number): boolean {
  return c < 0x20 || c === 0x7f;
}

/** list-wildcards = "%" / "*" ; quoted-specials = DQUOTE / "\" ; resp-specials = "]" */
export function isAtomSpecial(c: number): boolean {
  // atom-specials = "(" / ")" / "{" / SP / CTL / list-wildcards / quoted-specials / resp-specials
  return (
    c === 0x28 ||
    c === 0x29 ||
    c === 0x7b ||
    c === 0x20 ||
    isCtl(c) ||
    c === 0x25 ||
    c === 0x2a ||
    c === 0x22 ||
    c === 0x5c ||
    c === 0x5d ||
    c > 0x7e
  );
}

/** ATOM-CHAR = <any CHAR except atom-specials> */
export function isAtomChar(c: number): boolean {
  return !isAtomSpecial(c);
}

/** ASTRING-CHAR = ATOM-CHAR / resp-specials */
export function isAstringChar(c: number): boolean {
  return isAtomChar(c) || c === 0x5d;
}

/** list-char = ATOM-CHAR / list-wildcards / resp-specials */
export function isListChar(c: number): boolean {
  return isAstringChar(c) || c === 0x25 || c === 0x2a;
}

/** True when `s` can be sent as an atom (non-empty, only ATOM-CHARs). */
export function isAtom(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) if (!isAtomChar(s.charCodeAt(i))) return false;
  return true;
}

/** tag = 1*<any ASTRING-CHAR except "+"> */
export function isTag(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x2b || !isAstringChar(c)) return false;
  }
  return true;
}
