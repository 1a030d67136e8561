/**
 * The right-hand side of a Postfix map entry, shared by access(5) tables and
 * regexp_table(5) header/body checks: "REJECT text", "450 4.7.1 text", "OK" …
 * Parsing is separate from applying, so the maps' tests are string in,
 * structure out.
 */

export type MapAction =
  /** access(5): permit; header_checks: same as DUNNO. */
  | { kind: "ok" }
  /** Pretend nothing matched (access(5) stops the lookup). */
  | { kind: "dunno" }
  /** code/enhanced only when the map wrote them; each map kind has its own defaults. */
  | { kind: "reject"; code?: number; enhanced?: string; text: string }
  | { kind: "defer"; code?: number; enhanced?: string; text: string }
  | { kind: "warn"; text: string }
  | { kind: "info"; text: string }
  /** header_checks: delete the line (recorded; the message is not rewritten). */
  | { kind: "ignore" }
  | { kind: "discard"; text: string }
  | { kind: "hold"; text: string }
  | { kind: "prepend"; header: string }
  /** FILTER, REDIRECT, BCC, REPLACE, STRIP …: parsed, recorded, not applied. */
  | { kind: "unsupported"; verb: string; text: string };

const ENHANCED = /^([245])\.(\d{1,3})\.(\d{1,3})$/;

/** Splits "5.7.1 text" into an enhanced status code and text (Postfix 2.3+). */
function splitEnhanced(rest: string, klass: "4" | "5"): { enhanced?: string; text: string } {
  const [first = "", ...more] = rest.split(/\s+/);
  if (ENHANCED.test(first) && first.startsWith(klass)) return { enhanced: first, text: more.join(" ") };
  return { text: rest };
}

/** The SMTP reply parts of a reject/defer action, with the map kind's defaults. */
export function replyOf(
  action: Extract<MapAction, { kind: "reject" | "defer" }>,
  defaults: { code: number; enhanced: string; text: string },
): { code: number; enhanced: string; text: string } {
  return {
    code: action.code ?? defaults.code,
    enhanced: action.enhanced ?? (action.code ? `${String(action.code)[0]}.7.1` : defaults.enhanced),
    text: action.text === "" ? defaults.text : action.text,
  };
}

export function parseMapAction(result: string): MapAction {
  const trimmed = result.trim();
  // access(5): "An all-numerical result is treated as OK" (legacy maps).
  if (/^\d+$/.test(trimmed)) return { kind: "ok" };
  const numeric = /^([45])(\d\d)(?:\s+(.*))?$/s.exec(trimmed);
  if (numeric) {
    const klass = numeric[1] as "4" | "5";
    const code = Number(`${klass}${numeric[2]}`);
    const split = splitEnhanced(numeric[3] ?? "", klass);
    return klass === "5" ? { kind: "reject", code, ...split } : { kind: "defer", code, ...split };
  }
  const space = trimmed.search(/\s/);
  const verb = (space < 0 ? trimmed : trimmed.slice(0, space)).toUpperCase();
  const text = space < 0 ? "" : trimmed.slice(space).trim();
  switch (verb) {
    case "OK":
      return { kind: "ok" };
    case "DUNNO":
      return { kind: "dunno" };
    case "REJECT":
      return { kind: "reject", ...splitEnhanced(text, "5") };
    case "DEFER":
    case "DEFER_IF_PERMIT":
    case "DEFER_IF_REJECT":
      return { kind: "defer", ...splitEnhanced(text, "4") };
    case "WARN":
      return { kind: "warn", text };
    case "INFO":
      return { kind: "info", text };
    case "IGNORE":
      return { kind: "ignore" };
    case "DISCARD":
      return { kind: "discard", text };
    case "HOLD":
      return { kind: "hold", text };
    case "PREPEND":
      return { kind: "prepend", header: text };
    default:
      return { kind: "unsupported", verb, text };
  }
}

/** A PREPEND action's "Name: value" as a header pair, or undefined when it is not a header. */
export function prependHeader(header: string): [string, string] | undefined {
  const m = /^([!-9;-~]+):[ \t]*(.*)$/s.exec(header);
  return m ? [m[1]!, m[2]!] : undefined;
}
