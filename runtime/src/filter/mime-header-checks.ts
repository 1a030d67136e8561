/**
 * Postfix mime_header_checks: the MIME headers (Content-Type,
 * Content-Disposition, Content-Description, Content-Transfer-Encoding,
 * Content-ID, MIME-Version) of the message and of every part, nested parts and
 * attached messages included. When no map of its own is configured Postfix
 * uses header_checks (mime_header_checks = $header_checks); so do we, so a
 * classic `/^Content-(Type|Disposition):.*name="?.*\.exe/ REJECT` in
 * header_checks works unchanged.
 */
import { MapFindings } from "./content-map.js";
import type { MimeVisitor } from "./mime-walk.js";
import type { RegexpTable } from "./regexp-table.js";

export const CHECK = "mime-header-checks";

export function mimeHeaderChecks(table: RegexpTable | undefined): {
  visitor: MimeVisitor;
  findings: MapFindings;
} {
  const findings = new MapFindings(CHECK);
  const visitor: MimeVisitor = {
    header(field) {
      if (findings.decided || field.class !== "mime" || !table) return;
      const hit = table.lookup(field.text);
      if (hit) findings.apply(hit, field.text, { kind: "header", start: field.start, end: field.end });
    },
  };
  return { visitor, findings };
}
