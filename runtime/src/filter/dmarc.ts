/**
 * DMARC (RFC 7489) from the shared authenticate() call. A failing message
 * whose domain publishes p=reject (sp= for subdomains) is refused with 550
 * 5.7.1 when `dmarc.enforce` is set (§6.7: the receiver's policy decides);
 * p=quarantine adds `dmarc.quarantineScore` so it lands in the spam folder;
 * p=none adds `dmarc.failScore`. pct= samples as §6.6.4 says.
 */
import type { AuthOutcome } from "./auth.js";
import { result, type Shared } from "./context.js";
import type { CheckResult } from "./types.js";

export const CHECK = "dmarc";

export function dmarc(shared: Shared, auth: AuthOutcome, random: () => number = Math.random): CheckResult {
  const cfg = shared.config.dmarc;
  if (!cfg.enabled) return result(CHECK, "data", "skip", { detail: "disabled" });
  if (!auth.result) return result(CHECK, "data", "error", { detail: auth.error ?? "not run", ms: auth.ms });
  const d = auth.result.dmarc;
  const ms = auth.ms;
  if (!d) return result(CHECK, "data", "pass", { detail: "dmarc=none (no From domain)", ms });
  const status = d.status.result;
  const detail = `dmarc=${status} (p=${d.policy ?? d.p ?? "none"} header.from=${d.domain})`;
  if (status === "pass" || status === "none") return result(CHECK, "data", "pass", { detail, ms });
  if (status !== "fail") return result(CHECK, "data", "error", { detail, ms });
  const policy = (d.policy || d.p || "none").toLowerCase();
  const sampled = d.pct === undefined || d.pct >= 100 || random() * 100 < d.pct;
  if (policy === "reject" && cfg.enforce && sampled) {
    return result(CHECK, "data", "fail", {
      detail,
      score: cfg.quarantineScore,
      ms,
      action: "reject",
      code: 550,
      enhanced: "5.7.1",
      reply: `Email rejected per DMARC policy for ${d.domain}`,
    });
  }
  const score = policy === "none" ? cfg.failScore : cfg.quarantineScore;
  return result(CHECK, "data", "fail", { detail, score, ms });
}
