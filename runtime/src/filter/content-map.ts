/**
 * Applying a regexp table's answer to one header or body line, the way
 * Postfix's cleanup(8) applies header_checks / body_checks actions. Shared by
 * header-checks.ts, mime-header-checks.ts and body-checks.ts; each keeps one
 * MapFindings and turns it into its CheckResult.
 *
 * The first REJECT or DEFER ends the check (the message is refused anyway);
 * WARN/INFO hits, PREPEND headers, HOLD and DISCARD are collected. Defaults:
 * cleanup's "550 5.7.1 Message content rejected" and "450 4.7.1".
 */
import { clean, result } from "./context.js";
import { parseMapAction, prependHeader, replyOf } from "./map-action.js";
import type { RegexpMatch } from "./regexp-table.js";
import type { CheckResult, CheckStage } from "./types.js";

/** At most this many WARN/INFO hits are kept in a result (the log line stays small). */
export const MAX_RECORDED_HITS = 10;

export class MapFindings {
  private decision: Pick<CheckResult, "action" | "code" | "enhanced" | "reply" | "detail"> | undefined;
  private readonly notes: string[] = [];
  private readonly prepend: Array<[string, string]> = [];
  private disposition: "discard" | "hold" | undefined;

  constructor(
    readonly check: string,
    private readonly stage: CheckStage = "data",
  ) {}

  /** True once the check has decided; the walker's remaining lines can be skipped. */
  get decided(): boolean {
    return this.decision !== undefined;
  }

  apply(match: RegexpMatch, input: string): void {
    if (this.decision) return;
    const at = `${match.source}:${match.line}`;
    const a = parseMapAction(match.result);
    const note = (s: string): void => {
      if (this.notes.length < MAX_RECORDED_HITS) this.notes.push(s);
    };
    switch (a.kind) {
      case "reject":
      case "defer": {
        const r = replyOf(a, {
          ...(a.kind === "reject" ? { code: 550, enhanced: "5.7.1" } : { code: 450, enhanced: "4.7.1" }),
          text: a.kind === "reject" ? "Message content rejected" : "Try again later",
        });
        this.decision = {
          action: a.kind === "reject" ? "reject" : "tempfail",
          code: r.code,
          enhanced: r.enhanced,
          reply: clean(r.text),
          detail: `${a.kind.toUpperCase()} ${at}: ${clean(input, 120)}`,
        };
        return;
      }
      case "warn":
      case "info":
        note(`${a.kind.toUpperCase()} ${at}: ${clean(input, 120)}${a.text ? ` (${clean(a.text, 80)})` : ""}`);
        return;
      case "prepend": {
        const h = prependHeader(a.header);
        if (h) this.prepend.push(h);
        else note(`PREPEND without a header ${at}`);
        return;
      }
      case "hold":
      case "discard":
        // DISCARD wins over HOLD: Postfix drops a discarded message even if held.
        if (this.disposition !== "discard") this.disposition = a.kind;
        note(`${a.kind.toUpperCase()} ${at}: ${clean(input, 120)}`);
        return;
      case "ignore":
        note(`IGNORE ${at} (recorded; the line is kept)`);
        return;
      case "unsupported":
        note(`${a.verb} ${at} not supported`);
        return;
      case "ok":
      case "dunno":
        return;
    }
  }

  result(ms?: number): CheckResult {
    const extra = {
      ...(ms !== undefined ? { ms } : {}),
      ...(this.prepend.length > 0 ? { prepend: this.prepend } : {}),
      ...(this.disposition ? { disposition: this.disposition } : {}),
    };
    if (this.decision) return result(this.check, this.stage, "fail", { ...this.decision, ...extra });
    if (this.disposition) {
      return result(this.check, this.stage, "fail", { detail: this.notes.join("; "), ...extra });
    }
    return result(this.check, this.stage, "pass", {
      ...(this.notes.length > 0 ? { detail: this.notes.join("; ") } : {}),
      ...extra,
    });
  }
}
