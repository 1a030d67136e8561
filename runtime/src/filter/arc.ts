/**
 * ARC (RFC 8617) from the shared authenticate() call: a broken chain (cv=fail)
 * adds `arc.failScore`; no chain or a valid one passes. The result is in
 * Authentication-Results for Sieve and for any later local override.
 */
import type { AuthOutcome } from "./auth.js";
import { result, type Shared } from "./context.js";
import type { CheckResult } from "./types.js";

export const CHECK = "arc";

export function arc(shared: Shared, auth: AuthOutcome): CheckResult {
  if (!shared.config.arc.enabled) return result(CHECK, "data", "skip", { detail: "disabled" });
  if (!auth.result) return result(CHECK, "data", "error", { detail: auth.error ?? "not run", ms: auth.ms });
  const a = auth.result.arc;
  const ms = auth.ms;
  const status = a ? a.status.result : "none";
  const detail = `arc=${status}`;
  if (status === "fail")
    return result(CHECK, "data", "fail", { detail, score: shared.config.arc.failScore, ms });
  if (status === "temperror" || status === "permerror") return result(CHECK, "data", "error", { detail, ms });
  return result(CHECK, "data", "pass", { detail, ms });
}
