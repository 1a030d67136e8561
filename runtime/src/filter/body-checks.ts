/**
 * Postfix body_checks: every body line as received — not decoded, headers of
 * parts excluded (they go to the header maps), MIME boundary lines included —
 * one line at a time. As in Postfix, only the first `bodyChecksSizeLimit`
 * bytes of each part are inspected (body_checks_size_limit), and a line longer
 * than line_length_limit is inspected in pieces of that size.
 */
import { MapFindings } from "./content-map.js";
import type { MimeVisitor } from "./mime-walk.js";
import type { RegexpTable } from "./regexp-table.js";

export const CHECK = "body-checks";
/** Postfix line_length_limit. */
export const LINE_LENGTH_LIMIT = 2048;

export function bodyChecks(
  table: RegexpTable | undefined,
  sizeLimit: number,
): { visitor: MimeVisitor; findings: MapFindings } {
  const findings = new MapFindings(CHECK);
  let part = -1;
  let seen = 0;
  const visitor: MimeVisitor = {
    bodyLine(line, p, start, end) {
      if (findings.decided || !table) return;
      if (p !== part) {
        part = p;
        seen = 0;
      }
      if (seen >= sizeLimit) return;
      seen += line.length + 2;
      for (let i = 0; i === 0 || i < line.length; i += LINE_LENGTH_LIMIT) {
        const piece = line.length > LINE_LENGTH_LIMIT ? line.slice(i, i + LINE_LENGTH_LIMIT) : line;
        const hit = table.lookup(piece);
        if (hit) {
          // A long line's pieces share the line's span: an edit applies to the whole line.
          findings.apply(hit, piece, { kind: "body", start, end });
          if (findings.decided) return;
        }
      }
    },
  };
  return { visitor, findings };
}
