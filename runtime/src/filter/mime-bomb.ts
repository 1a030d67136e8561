/**
 * MIME bombs: structures built to make scanners work without end — parts
 * nested hundreds deep, or thousands of parts. mime-walk.ts stops at the
 * first limit (`mimeBomb.maxDepth`, `mimeBomb.maxParts`) without looking at
 * the rest, so the cost stays linear in the message size; this turns what it
 * saw into the result: 554 5.6.0 for nesting (RFC 3463 X.6.0, media error),
 * 552 5.3.4 for too many parts (too complex for the system).
 */
import { result } from "./context.js";
import type { WalkResult } from "./mime-walk.js";
import type { CheckResult } from "./types.js";

export const CHECK = "mime-bomb";

export function mimeBomb(walk: WalkResult, ms?: number): CheckResult {
  const timing = ms !== undefined ? { ms } : {};
  const x = walk.exceeded;
  if (!x)
    return result(CHECK, "data", "pass", { detail: `${walk.parts} part(s), depth ${walk.depth}`, ...timing });
  if (x.limit === "depth") {
    return result(CHECK, "data", "fail", {
      detail: `MIME nesting deeper than ${x.max}`,
      action: "reject",
      code: 554,
      enhanced: "5.6.0",
      reply: `Message rejected: MIME parts nested more than ${x.max} deep`,
      ...timing,
    });
  }
  return result(CHECK, "data", "fail", {
    detail: `more than ${x.max} MIME parts`,
    action: "reject",
    code: 552,
    enhanced: "5.3.4",
    reply: `Message rejected: more than ${x.max} MIME parts`,
    ...timing,
  });
}
