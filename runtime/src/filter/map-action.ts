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
  /** header_checks(5) REPLACE: the line is replaced by `text`. */
  | { kind: "replace"; text: string }
  /** STRIP: the line is deleted, and logged. */
  | { kind: "strip"; text: string }
  /** REDIRECT user@domain: the message goes there instead of to its recipients. */
  | { kind: "redirect"; address: string }
  /** BCC user@domain: one more recipient. */
  | { kind: "bcc"; address: string }
  /** FILTER and anything unknown: refused when a content map is loaded (contentActionError). */
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
    case "REPLACE":
      return { kind: "replace", text };
    case "STRIP":
      return { kind: "strip", text };
    case "REDIRECT":
      return { kind: "redirect", address: text };
    case "BCC":
      return { kind: "bcc", address: text };
    default:
      return { kind: "unsupported", verb, text };
  }
}

/** A PREPEND action's "Name: value" as a header pair, or undefined when it is not a header. */
export function prependHeader(header: string): [string, string] | undefined {
  const m = /^([!-9;-~]+):[ \t]*(.*)$/s.exec(header);
  return m ? [m[1]!, m[2]!] : undefined;
}

/** The actions header_checks(5) / body_checks document, as this runtime applies them. */
export const CONTENT_ACTIONS = [
  "REJECT",
  "DEFER",
  "4NN/5NN",
  "DISCARD",
  "HOLD",
  "WARN",
  "INFO",
  "IGNORE",
  "STRIP",
  "PREPEND",
  "REPLACE",
  "REDIRECT",
  "BCC",
  "DUNNO",
  "OK",
];

/** "user@domain" (after $n substitution it is checked again). */
const ADDRESS = /^[^\s@<>]+@[^\s@<>]+$/;

/**
 * Why a header/body checks result cannot be applied, or undefined when it can.
 * Called for every rule when the map is loaded, so an unsupported action stops
 * the start with the map's file and line instead of being skipped in silence.
 */
export function contentActionError(result: string): string | undefined {
  const a = parseMapAction(result);
  const needsArgument = (what: string) => `${what} needs an argument (header_checks(5))`;
  switch (a.kind) {
    case "unsupported":
      if (a.verb === "FILTER") {
        return "FILTER transport:destination is not supported: this runtime has no content_filter transports (remove the rule, or REDIRECT the message to a filtering mailbox)";
      }
      return `unknown action "${a.verb}" (supported: ${CONTENT_ACTIONS.join(", ")})`;
    case "prepend":
      return a.header === "" ? needsArgument("PREPEND") : undefined;
    case "replace":
      return a.text === "" ? needsArgument("REPLACE") : undefined;
    case "redirect":
    case "bcc":
      if (a.address === "") return needsArgument(a.kind.toUpperCase());
      if (!a.address.includes("$") && !ADDRESS.test(a.address)) {
        return `${a.kind.toUpperCase()} needs user@domain, got "${a.address}"`;
      }
      return undefined;
    default:
      return undefined;
  }
}

export function isMailAddress(text: string): boolean {
  return ADDRESS.test(text);
}
