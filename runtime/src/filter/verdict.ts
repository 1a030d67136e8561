/**
 * The verdict, taken from the recorded results and the configured policy —
 * no check decides alone (Haraka's habit). In order:
 *   1. a result that rejects (DNSBL over dnsblRejectScore, virus, map REJECT,
 *      DMARC p=reject, MIME bomb …) → its 5xx;
 *   2. spamd or clamd failed and onScannerFailure is "closed" → 451 4.7.1;
 *   3. a result that tempfails (rate 421, map DEFER) → its 4xx;
 *   4. before DATA: accept (go on);
 *   5. at DATA: the summed score ≥ spamRejectScore → 550 5.7.1; ≥ spamTagScore
 *      → tag (X-Spam-Flag: YES); otherwise accept. X-Spam-Status / X-Spam-Score
 *      go on every scored message (SpamAssassin's header forms, so existing
 *      Sieve rules match), with Authentication-Results and access-map PREPENDs.
 * Content-map line edits (IGNORE/REPLACE/PREPEND), REDIRECT and BCC ride along.
 */
import type { FilterConfig } from "./context.js";
import type { CheckResult, CheckStage, Verdict } from "./types.js";

/** Checks whose failure is a scanner failure, governed by onScannerFailure. */
export const SCANNERS = new Set(["spamd", "clamd"]);

/** Headers a sender must not be able to set for us (they are ours to add). */
export const OWN_HEADERS = ["x-spam-status", "x-spam-score", "x-spam-flag"];

const DEFAULT_CODES = {
  reject: { code: 550, enhanced: "5.7.1", message: "Rejected by policy" },
  tempfail: { code: 451, enhanced: "4.7.1", message: "Try again later" },
} as const;

export interface DecideOptions {
  stage: CheckStage;
  /** Scoring applies (not a trusted or authenticated client). */
  scored: boolean;
  /** Extra headers for the accepted message (Authentication-Results, Received-SPF). */
  authHeaders?: Array<[string, string]>;
  /** spamd's rule names for X-Spam-Status tests=. */
  symbols?: string[];
}

function fromResult(
  r: CheckResult,
  action: "reject" | "tempfail",
  results: CheckResult[],
  score: number,
): Verdict {
  const d = DEFAULT_CODES[action];
  return {
    action,
    code: r.code ?? d.code,
    enhanced: r.enhanced ?? d.enhanced,
    message: r.reply ?? d.message,
    addHeaders: [],
    score,
    decidedBy: r.check,
    results,
  };
}

export const round1 = (n: number): number => Math.round(n * 10) / 10;

/** Rule names for X-Spam-Status: spamd's symbols, then our checks that scored. */
function testNames(results: CheckResult[], symbols: string[]): string[] {
  const ours = results
    .filter((r) => r.check !== "spamd" && (r.score ?? 0) !== 0)
    .map((r) => `MI_${r.check.toUpperCase().replace(/-/g, "_")}`);
  return [...symbols, ...ours];
}

/** Joins rule names with commas, folding (RFC 5322 §2.2.3) so no line passes ~78 characters. */
export function foldList(names: string[]): string[] {
  const out: string[] = [];
  let width = 40; // "X-Spam-Status: Yes, score=… tests=" precedes the first name
  for (const n of names) {
    if (out.length > 0 && width + n.length > 76) {
      out.push(`\r\n\t${n}`);
      width = 8 + n.length;
    } else {
      out.push(n);
      width += n.length + 1;
    }
  }
  return out;
}

export function decide(config: FilterConfig, results: CheckResult[], opts: DecideOptions): Verdict {
  const score = round1(results.reduce((s, r) => s + (r.score ?? 0), 0));
  const rejecting = results.find((r) => r.action === "reject");
  if (rejecting) return fromResult(rejecting, "reject", results, score);
  const scannerDown = results.find((r) => SCANNERS.has(r.check) && r.outcome === "error");
  if (scannerDown && config.onScannerFailure === "closed") {
    return {
      action: "tempfail",
      code: 451,
      enhanced: "4.7.1",
      message: "Content scanner unavailable, try again later",
      addHeaders: [],
      score,
      decidedBy: `onScannerFailure=closed (${scannerDown.check})`,
      results,
    };
  }
  const tempfailing = results.find((r) => r.action === "tempfail");
  if (tempfailing) return fromResult(tempfailing, "tempfail", results, score);

  const prepends = results.flatMap((r) => r.prepend ?? []);
  const dispositions = results.map((r) => r.disposition).filter((d) => d !== undefined);
  const disposition = dispositions.includes("discard") ? "discard" : dispositions[0];
  const edits = results.flatMap((r) => r.edits ?? []).sort((a, b) => a.start - b.start);
  const redirect = results.reduce<string | undefined>((last, r) => r.redirect ?? last, undefined);
  const bcc = [...new Set(results.flatMap((r) => r.bcc ?? []))];
  const base = {
    score,
    results,
    ...(disposition ? { disposition } : {}),
    ...(edits.length > 0 ? { edits } : {}),
    ...(redirect ? { redirect } : {}),
    ...(bcc.length > 0 ? { bcc } : {}),
  };
  if (opts.stage !== "data") return { action: "accept", addHeaders: [], decidedBy: "none", ...base };

  const headers: Array<[string, string]> = [...prepends, ...(opts.authHeaders ?? [])];
  if (!opts.scored) {
    return { action: "accept", addHeaders: headers, decidedBy: "trusted client", ...base };
  }
  if (score >= config.spamRejectScore) {
    return {
      action: "reject",
      code: 550,
      enhanced: "5.7.1",
      message: `Message content rejected as spam (score ${score.toFixed(1)})`,
      addHeaders: [],
      decidedBy: "spamRejectScore",
      ...base,
    };
  }
  const spam = score >= config.spamTagScore;
  const tests = foldList(testNames(results, opts.symbols ?? []));
  headers.push(
    [
      "X-Spam-Status",
      `${spam ? "Yes" : "No"}, score=${score.toFixed(1)} required=${config.spamTagScore.toFixed(1)} tests=${tests.join(",") || "none"}`,
    ],
    ["X-Spam-Score", score.toFixed(1)],
  );
  if (spam) headers.push(["X-Spam-Flag", "YES"]);
  return {
    action: spam ? "tag" : "accept",
    addHeaders: headers,
    removeHeaders: OWN_HEADERS,
    decidedBy: spam ? "spamTagScore" : "none",
    ...base,
  };
}
