/**
 * DKIM (RFC 6376) from the shared authenticate() call: any valid signature
 * passes; signatures present but none valid score `dkim.failScore`; an
 * unsigned message passes (DMARC decides what that means for its domain);
 * a key lookup that timed out is an error (RFC 6376 §6.1.2 TEMPFAIL).
 */
import type { AuthOutcome } from "./auth.js";
import { result, type Shared } from "./context.js";
import type { CheckResult } from "./types.js";

export const CHECK = "dkim";

export function dkim(shared: Shared, auth: AuthOutcome): CheckResult {
  if (!shared.config.dkim.enabled) return result(CHECK, "data", "skip", { detail: "disabled" });
  if (!auth.result) return result(CHECK, "data", "error", { detail: auth.error ?? "not run", ms: auth.ms });
  const sigs = auth.result.dkim.results ?? [];
  const summary = sigs
    .map((s) => `${s.status.result}${s.signingDomain ? ` d=${s.signingDomain}` : ""}`)
    .join(", ");
  const detail = `dkim=${summary || "none"}`;
  const ms = auth.ms;
  if (sigs.some((s) => s.status.result === "pass")) return result(CHECK, "data", "pass", { detail, ms });
  const signed = sigs.filter((s) => s.status.result !== "none");
  if (signed.length === 0) return result(CHECK, "data", "pass", { detail, ms });
  if (signed.every((s) => s.status.result === "temperror"))
    return result(CHECK, "data", "error", { detail, ms });
  return result(CHECK, "data", "fail", { detail, score: shared.config.dkim.failScore, ms });
}
