/**
 * LDAP search filters built from untrusted input (addresses and logins typed
 * by clients). Values are escaped per RFC 4515 §3 so that `*)(uid=*` is a
 * literal string, never filter syntax.
 */

/**
 * RFC 4515 §3: in an assertion value, NUL, `(`, `)`, `*` and `\` must be written
 * as a backslash and two hex digits. Other characters (UTF-8 included) are left
 * as they are: ldapts decodes `\XX` escapes one byte per character, so escaping
 * multi-byte UTF-8 would corrupt it.
 */
export function escapeFilterValue(value: string): string {
  return value.replace(/[\0()*\\]/g, (c) => `\\${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
}

const ACCOUNT_CLASS = "(objectClass=inetOrgPerson)";

/** An account whose `mail` or `mailLocalAddress` is this address (both match case-insensitively in the schema). */
export function addressFilter(address: string): string {
  const v = escapeFilterValue(address);
  return `(&${ACCOUNT_CLASS}(|(mail=${v})(mailLocalAddress=${v})))`;
}

/** An account with this `uid`. */
export function uidFilter(uid: string): string {
  return `(&${ACCOUNT_CLASS}(uid=${escapeFilterValue(uid)}))`;
}
