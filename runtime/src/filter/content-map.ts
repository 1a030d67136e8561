/**
 * Applying a regexp table's answer to one header or body line, the way
 * Postfix's cleanup(8) applies header_checks / body_checks actions. Shared by
 * header-checks.ts, mime-header-checks.ts and body-checks.ts; each keeps one
 * MapFindings and turns it into its CheckResult.
 *
 * The first REJECT or DEFER ends the check (the message is refused anyway).
 * Everything else is collected, with header_checks(5)'s semantics:
 *   WARN, INFO       logged (the result's detail)
 *   IGNORE, STRIP    the line is deleted (STRIP also logs)
 *   REPLACE text     the line is replaced; a header's replacement must be a header
 *   PREPEND text     a line is inserted before the matched one
 *   HOLD, DISCARD    the message's disposition (DISCARD wins)
 *   REDIRECT addr    all recipients replaced (the last REDIRECT wins)
 *   BCC addr         one more recipient
 *   DUNNO, OK        as if nothing matched
 * Line edits are byte spans of the message given to the pipeline (Verdict.edits).
 * FILTER and unknown actions never get here: the map is refused at load.
 * Defaults: cleanup's "550 5.7.1 Message content rejected" and "450 4.7.1".
 */
import { clean, result } from "./context.js";
import { isMailAddress, parseMapAction, prependHeader, replyOf } from "./map-action.js";
import type { RegexpMatch } from "./regexp-table.js";
import type { CheckResult, CheckStage, MessageEdit } from "./types.js";

/** Where the matched input sits in the message: a whole logical header, or one body line. */
export interface LineSpan {
  kind: "header" | "body";
  /** Byte offsets; `end` is past the line's CRLF. */
  start: number;
  end: number;
}

/** At most this many WARN/INFO hits are kept in a result (the log line stays small). */
export const MAX_RECORDED_HITS = 10;

export class MapFindings {
  private decision: Pick<CheckResult, "action" | "code" | "enhanced" | "reply" | "detail"> | undefined;
  private readonly notes: string[] = [];
  private readonly edits: MessageEdit[] = [];
  private readonly bcc: string[] = [];
  private redirect: string | undefined;
  private disposition: "discard" | "hold" | undefined;

  constructor(
    readonly check: string,
    private readonly stage: CheckStage = "data",
  ) {}

  /** True once the check has decided; the walker's remaining lines can be skipped. */
  get decided(): boolean {
    return this.decision !== undefined;
  }

  apply(match: RegexpMatch, input: string, span?: LineSpan): void {
    if (this.decision) return;
    const at = `${match.source}:${match.line}`;
    const a = parseMapAction(match.result);
    const note = (s: string): void => {
      if (this.notes.length < MAX_RECORDED_HITS) this.notes.push(s);
    };
    /** A replacement or inserted line; a header map's must be a header (header_checks(5)). */
    const line = (text: string, verb: string): string | undefined => {
      if (span?.kind === "header" && !prependHeader(text)) {
        note(`${verb} without a header label ${at} (ignored)`);
        return undefined;
      }
      return `${text.replace(/[\r\n]+/g, " ")}\r\n`;
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
        const text = line(a.header, "PREPEND");
        if (text && span) this.edits.push({ start: span.start, end: span.start, text });
        note(`PREPEND ${at}`);
        return;
      }
      case "replace": {
        const text = line(a.text, "REPLACE");
        if (text && span) this.edits.push({ start: span.start, end: span.end, text });
        note(`REPLACE ${at}: ${clean(input, 120)}`);
        return;
      }
      case "ignore":
      case "strip":
        if (span) this.edits.push({ start: span.start, end: span.end, text: "" });
        note(
          `${a.kind.toUpperCase()} ${at}: ${clean(input, 120)}${a.kind === "strip" && a.text ? ` (${clean(a.text, 80)})` : ""}`,
        );
        return;
      case "hold":
      case "discard":
        // DISCARD wins over HOLD: Postfix drops a discarded message even if held.
        if (this.disposition !== "discard") this.disposition = a.kind;
        note(`${a.kind.toUpperCase()} ${at}: ${clean(input, 120)}`);
        return;
      case "redirect":
      case "bcc": {
        // The address may come from $n: checked again, a bad one is logged and not used.
        if (!isMailAddress(a.address)) {
          note(`${a.kind.toUpperCase()} ${at}: not an address "${clean(a.address, 80)}" (ignored)`);
          return;
        }
        if (a.kind === "redirect") this.redirect = a.address;
        else if (!this.bcc.includes(a.address.toLowerCase())) this.bcc.push(a.address.toLowerCase());
        note(`${a.kind.toUpperCase()} ${a.address} ${at}`);
        return;
      }
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
      ...(this.edits.length > 0 ? { edits: this.edits } : {}),
      ...(this.redirect ? { redirect: this.redirect } : {}),
      ...(this.bcc.length > 0 ? { bcc: this.bcc } : {}),
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
