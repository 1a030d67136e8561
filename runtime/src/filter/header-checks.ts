/**
 * Postfix header_checks over the message's own (top-level, non-MIME) headers,
 * one logical header at a time, and nested_header_checks over the non-MIME
 * headers of parts and attached messages (Postfix's default for that map is
 * header_checks). MIME headers go to mime-header-checks.ts, as in Postfix.
 */
import { MapFindings } from "./content-map.js";
import type { MimeVisitor } from "./mime-walk.js";
import type { RegexpTable } from "./regexp-table.js";

export const CHECK = "header-checks";

export function headerChecks(
  table: RegexpTable | undefined,
  nested: RegexpTable | undefined,
): { visitor: MimeVisitor; findings: MapFindings } {
  const findings = new MapFindings(CHECK);
  const visitor: MimeVisitor = {
    header(field) {
      if (findings.decided || field.class === "mime") return;
      const t = field.class === "primary" ? table : nested;
      const hit = t?.lookup(field.text);
      if (hit) findings.apply(hit, field.text, { kind: "header", start: field.start, end: field.end });
    },
  };
  return { visitor, findings };
}
