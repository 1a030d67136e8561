/**
 * Early talker: the client sent data before our 220 greeting. RFC 5321
 * §4.3.1 has the client wait for it; bulk senders that pipeline blindly
 * don't (Postfix postscreen's "pregreet" test). smtp/ detects it and passes
 * ConnectionInfo.earlyTalker.
 */
import { isTrusted, result, type Session, type Shared } from "./context.js";
import type { CheckResult } from "./types.js";

export const CHECK = "early-talker";

export function earlyTalker(shared: Shared, session: Session): CheckResult {
  if (!shared.config.earlyTalker.enabled) return result(CHECK, "connect", "skip", { detail: "disabled" });
  if (isTrusted(session)) return result(CHECK, "connect", "skip", { detail: "trusted client" });
  if (!session.conn?.earlyTalker) return result(CHECK, "connect", "pass");
  return result(CHECK, "connect", "fail", {
    detail: "sent data before the greeting",
    action: "reject",
    code: 554,
    enhanced: "5.5.1",
    reply: "Protocol error: talked before the greeting (RFC 5321 section 4.3.1)",
  });
}
