/**
 * Postfix regexp tables (regexp_table(5)), so existing header_checks,
 * mime_header_checks and body_checks maps work unchanged:
 *
 *   # comment
 *   /pattern/flags    result        first match wins, in file order
 *   !/pattern/flags   result        matches when the pattern does not ($n not allowed)
 *   if /pattern/flags               rules up to the matching endif apply only when
 *   endif                           the pattern matches (`if !/…/` when it does not)
 *   <whitespace>more text           continues the previous logical line
 *
 * Flags toggle Postfix's defaults: `i` (default case-insensitive), `x`
 * (default extended POSIX syntax; off = basic regular expressions), `m`
 * (default off; on = REG_NEWLINE, ^ and $ also at embedded newlines). Without
 * `m` POSIX lets `.` match a newline inside a folded header, so the JS regex
 * gets the `s` flag. Any non-alphanumeric, non-space character can delimit the
 * pattern. `$1`, `${1}`, `$(1)` in the result insert a captured group, `$$` a `$`.
 *
 * pcre_table(5) maps (`pcre:`) have the same syntax with PCRE patterns, which
 * JavaScript's RegExp reads as they are for what maps use; their flags: `i`
 * (default caseless), `s` (default on: `.` matches a newline), `m` (default
 * off), `A` (anchored), `E` and `X` (no effect here); `x` and `U` are refused.
 * A `validate` callback checks each rule's result when the map is loaded.
 */

export type RegexpDialect = "regexp" | "pcre";

export interface ParseOptions {
  dialect?: RegexpDialect;
  /** Returns why a rule's result cannot be used; the load fails with file:line. */
  validate?: (result: string) => string | undefined;
}

export interface RegexpMatch {
  /** The result text after $n substitution. */
  result: string;
  /** Line of the rule in its file (1-based), for logs and statistics. */
  line: number;
  source: string;
}

interface Pattern {
  re: RegExp;
  negate: boolean;
  line: number;
}

type Entry = (Pattern & { kind: "rule"; result: string }) | (Pattern & { kind: "if"; body: Entry[] });

export class RegexpTableError extends Error {
  constructor(source: string, line: number, message: string) {
    super(`${source}:${line}: ${message}`);
    this.name = "RegexpTableError";
  }
}

export interface RegexpTable {
  readonly source: string;
  /** Number of rules (not counting if/endif). */
  readonly size: number;
  /** First matching rule for one input (a header, or a body line), or undefined. */
  lookup(input: string): RegexpMatch | undefined;
}

const POSIX_CLASSES: Record<string, string> = {
  alpha: "a-zA-Z",
  digit: "0-9",
  alnum: "a-zA-Z0-9",
  upper: "A-Z",
  lower: "a-z",
  space: " \\t\\r\\n\\v\\f",
  blank: " \\t",
  punct: "!-\\/:-@\\[-`{-~",
  print: " -~",
  graph: "!-~",
  cntrl: "\\x00-\\x1f\\x7f",
  xdigit: "0-9A-Fa-f",
};

/**
 * POSIX (extended or basic) regular expression → JavaScript source. Bracket
 * expressions keep their text except `[:class:]`; GNU `\<` `\>` become `\b`.
 */
export function posixToJs(pattern: string, extended: boolean): string {
  let out = "";
  let i = 0;
  while (i < pattern.length) {
    const c = pattern[i]!;
    if (c === "[") {
      // A bracket expression: "]" first (or after "^") is literal (POSIX).
      let j = i + 1;
      let body = "";
      if (pattern[j] === "^") {
        body += "^";
        j++;
      }
      if (pattern[j] === "]") {
        body += "\\]";
        j++;
      }
      while (j < pattern.length && pattern[j] !== "]") {
        const cls = /^\[:([a-z]+):\]/.exec(pattern.slice(j));
        if (cls) {
          const js = POSIX_CLASSES[cls[1]!];
          if (js === undefined) throw new Error(`unknown character class [:${cls[1]}:]`);
          body += js;
          j += cls[0].length;
          continue;
        }
        body += pattern[j];
        j++;
      }
      if (j >= pattern.length) throw new Error("unterminated bracket expression");
      out += `[${body}]`;
      i = j + 1;
      continue;
    }
    if (c === "\\" && i + 1 < pattern.length) {
      const n = pattern[i + 1]!;
      i += 2;
      if (n === "<" || n === ">") out += "\\b";
      else if (!extended && "(){}|+?".includes(n)) out += n;
      else out += `\\${n}`;
      continue;
    }
    if (!extended && "(){}|+?".includes(c)) {
      out += `\\${c}`;
      i++;
      continue;
    }
    out += c;
    i++;
  }
  return out;
}

/** Splits "<delim>pattern<delim>flags rest" (after an optional "!"). */
function parsePattern(
  text: string,
  source: string,
  line: number,
  dialect: RegexpDialect,
): { pattern: Pattern; rest: string } {
  let s = text;
  let negate = false;
  if (s.startsWith("!")) {
    negate = true;
    s = s.slice(1).trimStart();
  }
  const delim = s[0];
  if (delim === undefined || /[\sA-Za-z0-9\\]/.test(delim)) {
    throw new RegexpTableError(source, line, `expected a delimited pattern like /regexp/, got "${text}"`);
  }
  let j = 1;
  while (j < s.length && s[j] !== delim) {
    if (s[j] === "\\" && j + 1 < s.length) j++;
    j++;
  }
  if (j >= s.length) throw new RegexpTableError(source, line, `missing closing ${delim} in "${text}"`);
  const raw = s.slice(1, j);
  let k = j + 1;
  let caseless = true;
  let extended = true;
  let multiline = false;
  let dotall = true;
  let anchored = false;
  while (k < s.length && !/\s/.test(s[k]!)) {
    const f = s[k]!;
    if (f === "i") caseless = !caseless;
    else if (f === "m") multiline = !multiline;
    else if (dialect === "regexp" && f === "x") extended = !extended;
    else if (dialect === "pcre" && f === "s") dotall = !dotall;
    else if (dialect === "pcre" && f === "A") anchored = !anchored;
    else if (dialect === "pcre" && (f === "E" || f === "X")) {
      // E (dollar_endonly) is how JavaScript's $ behaves anyway; X (PCRE_EXTRA) only adds errors.
    } else throw new RegexpTableError(source, line, `unknown flag "${f}" after ${delim}${raw}${delim}`);
    k++;
  }
  let re: RegExp;
  try {
    const js = dialect === "pcre" ? (anchored ? `^(?:${raw})` : raw) : posixToJs(raw, extended);
    // POSIX without REG_NEWLINE lets "." match a newline; so does PCRE with DOTALL (pcre_table(5)'s default).
    const flags =
      (caseless ? "i" : "") +
      (multiline ? "m" : "") +
      (dialect === "pcre" ? (dotall ? "s" : "") : multiline ? "" : "s");
    re = new RegExp(js, flags);
  } catch (err) {
    throw new RegexpTableError(
      source,
      line,
      `bad regular expression ${delim}${raw}${delim}: ${(err as Error).message}`,
    );
  }
  return { pattern: { re, negate, line }, rest: s.slice(k).trim() };
}

/** Highest $n the result refers to (0 when none), checking the syntax. */
function maxGroupRef(result: string, source: string, line: number): number {
  let max = 0;
  const refs = /\$(\$|\d+|\{(\d+)\}|\((\d+)\)|.?)/g;
  for (const m of result.matchAll(refs)) {
    if (m[1] === "$") continue;
    const n = m[2] ?? m[3] ?? (/^\d+$/.test(m[1] ?? "") ? m[1] : undefined);
    if (n === undefined)
      throw new RegexpTableError(source, line, `bad $ in result "${result}" (use $$ for $)`);
    max = Math.max(max, Number(n));
  }
  return max;
}

function substitute(result: string, groups: RegExpExecArray): string {
  if (!result.includes("$")) return result;
  return result.replace(/\$(\$|\d+|\{(\d+)\}|\((\d+)\))/g, (_all, a: string, b?: string, c?: string) =>
    a === "$" ? "$" : (groups[Number(b ?? c ?? a)] ?? ""),
  );
}

/** Joins continuation lines; drops comments and blank lines. Returns [lineNo, text]. */
function logicalLines(text: string): Array<[number, string]> {
  const out: Array<[number, string]> = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!;
    const t = l.trim();
    if (t === "" || t.startsWith("#")) continue;
    if (/^\s/.test(l) && out.length > 0) {
      const last = out[out.length - 1]!;
      last[1] = `${last[1]} ${t}`;
    } else {
      out.push([i + 1, t]);
    }
  }
  return out;
}

export function parseRegexpTable(text: string, source = "<inline>", options: ParseOptions = {}): RegexpTable {
  const dialect = options.dialect ?? "regexp";
  const root: Entry[] = [];
  const stack: Array<{ body: Entry[]; line: number }> = [{ body: root, line: 0 }];
  let size = 0;
  for (const [line, t] of logicalLines(text)) {
    const top = stack[stack.length - 1]!;
    if (/^endif$/i.test(t)) {
      if (stack.length === 1) throw new RegexpTableError(source, line, "endif without if");
      stack.pop();
      continue;
    }
    const ifm = /^if\s+(.*)$/i.exec(t);
    if (ifm) {
      const { pattern, rest } = parsePattern(ifm[1]!, source, line, dialect);
      if (rest !== "") throw new RegexpTableError(source, line, `text after the if pattern: "${rest}"`);
      const entry: Entry = { kind: "if", ...pattern, body: [] };
      top.body.push(entry);
      stack.push({ body: entry.body, line });
      continue;
    }
    const { pattern, rest } = parsePattern(t, source, line, dialect);
    if (rest === "") throw new RegexpTableError(source, line, "missing result after the pattern");
    const invalid = options.validate?.(rest);
    if (invalid) throw new RegexpTableError(source, line, invalid);
    const refs = maxGroupRef(rest, source, line);
    if (refs > 0 && pattern.negate) {
      throw new RegexpTableError(source, line, "$n in the result of a negated pattern");
    }
    const groups = new RegExp(`${pattern.re.source}|`).exec("")!.length - 1;
    if (refs > groups) {
      throw new RegexpTableError(source, line, `result uses $${refs} but the pattern has ${groups} group(s)`);
    }
    top.body.push({ kind: "rule", ...pattern, result: rest });
    size++;
  }
  if (stack.length > 1) throw new RegexpTableError(source, stack[stack.length - 1]!.line, "if without endif");

  const walk = (entries: Entry[], input: string): RegexpMatch | undefined => {
    for (const e of entries) {
      const m = e.re.exec(input);
      if (m === null) {
        if (!e.negate) continue;
      } else if (e.negate) continue;
      if (e.kind === "if") {
        const hit = walk(e.body, input);
        if (hit) return hit;
        continue;
      }
      return { result: m ? substitute(e.result, m) : e.result, line: e.line, source };
    }
    return undefined;
  };
  return { source, size, lookup: (input) => walk(root, input) };
}
