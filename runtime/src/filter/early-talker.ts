/**
 * Early talker: the client sent data before our 220 greeting. RFC 5321
 * §4.3.1 has the client wait for it; bulk senders that pipeline blindly
 * don't (Postfix postscreen's "pregreet" test). smtp/greeting.ts holds the
 * greeting back and passes ConnectionInfo.earlyTalker / greetWaitMs.
 */
import { isTrusted, result, type Session, type Shared } from "./context.js";
import type { CheckResult } from "./types.js";

export const CHECK = "early-talker";

export function earlyTalker(shared: Shared, session: Session): CheckResult {
  if (!shared.config.earlyTalker.enabled) return result(CHECK, "connect", "skip", { detail: "disabled" });
  if (isTrusted(session)) return result(CHECK, "connect", "skip", { detail: "trusted client" });
  const conn = session.conn;
  if (conn?.earlyTalker) {
    return result(CHECK, "connect", "fail", {
      detail: `sent ${conn.earlyBytes ?? "some"} bytes before the greeting`,
      action: "reject",
      code: 554,
      enhanced: "5.5.1",
      reply: "Protocol error: talked before the greeting (RFC 5321 section 4.3.1)",
    });
  }
  if (!conn?.greetWaitMs) {
    return result(CHECK, "connect", "skip", {
      detail: "greeted without a pause (exempt or passed recently)",
    });
  }
  return result(CHECK, "connect", "pass", { detail: `silent for ${conn.greetWaitMs} ms` });
}
