/**
 * SPF (RFC 7208) at MAIL FROM, evaluated by mailauth with our resolver. The
 * null sender is checked through the HELO identity (§2.3: postmaster@helo).
 * "fail" scores `spf.failScore`, or is rejected with 550 5.7.23 (RFC 7372 §3.2)
 * when `spf.rejectFail` is set; "softfail" scores `spf.softfailScore`;
 * temperror/permerror are error results (DMARC still sees them in the data
 * stage). Trusted and authenticated clients are not checked.
 */
import { spf as mailauthSpf } from "mailauth";
import { isTrusted, result, type Session, type Shared } from "./context.js";
import type { CheckResult } from "./types.js";

export const CHECK = "spf";

export async function spf(shared: Shared, session: Session, sender: string): Promise<CheckResult> {
  const cfg = shared.config.spf;
  if (!cfg.enabled) return result(CHECK, "mail", "skip", { detail: "disabled" });
  if (isTrusted(session)) return result(CHECK, "mail", "skip", { detail: "trusted client" });
  const ip = session.conn?.remoteAddress;
  if (!ip) return result(CHECK, "mail", "skip", { detail: "no client address" });
  const started = performance.now();
  const helo = session.helo ?? "";
  const r = await mailauthSpf({
    sender: sender === "" ? `postmaster@${helo}` : sender,
    ip,
    helo,
    mta: shared.hostname,
    resolver: session.dns,
  });
  const ms = Math.round(performance.now() - started);
  const status = r.status.result;
  const detail = `spf=${status} (${r.domain})`;
  switch (status) {
    case "pass":
    case "none":
    case "neutral":
      return result(CHECK, "mail", "pass", { detail, ms });
    case "softfail":
      return result(CHECK, "mail", "fail", { detail, score: cfg.softfailScore, ms });
    case "fail":
      return cfg.rejectFail
        ? result(CHECK, "mail", "fail", {
            detail,
            score: cfg.failScore,
            ms,
            action: "reject",
            code: 550,
            enhanced: "5.7.23",
            reply: `SPF validation failed: ${r.domain} does not designate ${ip} as permitted sender`,
          })
        : result(CHECK, "mail", "fail", { detail, score: cfg.failScore, ms });
    default:
      return result(CHECK, "mail", "error", { detail, ms });
  }
}
