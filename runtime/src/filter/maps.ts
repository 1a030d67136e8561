/**
 * Loading Postfix maps named as in main.cf: `type:path` or a bare path.
 * regexp: → regexp_table(5); hash:/btree:/lmdb:/cdb:/texthash: → the
 * access(5) source file (the text postmap reads; a trailing .db is dropped).
 * Loaded once at start; a bad map stops the start with file:line.
 */
import { readFileSync } from "node:fs";
import { type ParseOptions, parseRegexpTable, type RegexpTable } from "./regexp-table.js";

export interface MapSpec {
  type: "regexp" | "pcre" | "text";
  path: string;
}

const TEXT_TYPES = new Set(["hash", "btree", "lmdb", "cdb", "texthash", "dbm", "sdbm"]);

export function parseMapSpec(spec: string, bare: MapSpec["type"]): MapSpec {
  const m = /^([a-z]+):(.+)$/.exec(spec);
  if (!m) return { type: bare, path: spec };
  const [, type, path] = m as unknown as [string, string, string];
  if (type === "regexp" || type === "pcre") return { type, path };
  if (TEXT_TYPES.has(type)) return { type: "text", path: path.replace(/\.db$/, "") };
  throw new Error(`${spec}: map type "${type}:" is not supported (use regexp:, pcre: or hash:)`);
}

export function loadRegexpTable(spec: string, validate?: ParseOptions["validate"]): RegexpTable {
  const s = parseMapSpec(spec, "regexp");
  if (s.type === "text") throw new Error(`${spec}: content checks need a regexp: or pcre: table`);
  return parseRegexpTable(readFileSync(s.path, "utf8"), s.path, {
    dialect: s.type,
    ...(validate ? { validate } : {}),
  });
}

/** An access(5) table: exact keys (case-folded), first entry wins as with postmap. */
export interface TextTable {
  readonly source: string;
  get(key: string): { result: string; line: number } | undefined;
}

/**
 * `validate` checks each entry's result when the table is loaded (why it
 * cannot be used, or undefined); a bad one fails the load with file:line.
 */
export function parseTextTable(
  text: string,
  source = "<inline>",
  validate?: (result: string) => string | undefined,
): TextTable {
  const map = new Map<string, { result: string; line: number }>();
  // An entry is checked once complete (continuation lines belong to its result).
  const check = (entry: { result: string; line: number }) => {
    const invalid = validate?.(entry.result);
    if (invalid) throw new Error(`${source}:${entry.line}: ${invalid}`);
  };
  const lines = text.split(/\r?\n/);
  let last: { key: string; entry: { result: string; line: number } } | undefined;
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!;
    const t = raw.trim();
    if (t === "" || t.startsWith("#")) continue;
    if (/^\s/.test(raw) && last) {
      last.entry.result = `${last.entry.result} ${t}`; // continuation line
      continue;
    }
    const m = /^(\S+)\s+(.+)$/.exec(t);
    if (!m) throw new Error(`${source}:${i + 1}: expected "key value", got "${t}"`);
    const key = m[1]!.toLowerCase();
    const entry = { result: m[2]!, line: i + 1 };
    if (last) check(last.entry);
    last = { key, entry };
    if (!map.has(key)) map.set(key, entry);
  }
  if (last) check(last.entry);
  return { source, get: (key) => map.get(key.toLowerCase()) };
}
