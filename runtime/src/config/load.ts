/**
 * runtime.yaml → RuntimeConfig, once, at the edge. Every problem is reported
 * with the key path (and the line) it concerns — `imap.listen[0]: expected
 * host:port, e.g. 0.0.0.0:143 (line 12)` — so that `mailinfra config check` and a failed start
 * say exactly what to fix. Keys the schema does not know are errors too: a
 * misspelt limit must not silently fall back to its default.
 */
import { readFile } from "node:fs/promises";
import { isNode, LineCounter, parseDocument } from "yaml";
import type { z } from "zod";
import { type RuntimeConfig, RuntimeConfigSchema } from "./schema.js";

/** runtime.yaml larger than this is refused unread (a rendered config is a few KB). */
export const MAX_CONFIG_BYTES = 1024 * 1024;
export const DEFAULT_CONFIG_PATH = "/etc/mailinfra/runtime.yaml";

export class ConfigError extends Error {
  constructor(
    readonly source: string,
    /** One line per problem, each starting with the key path or the line. */
    readonly problems: string[],
  ) {
    super(`${source}: ${problems.length} problem(s)\n${problems.map((p) => `  ${p}`).join("\n")}`);
    this.name = "ConfigError";
  }
}

type Path = readonly PropertyKey[];

/** `imap.listen[0]`, `host`, `(root)`. */
export function formatPath(path: Path): string {
  let out = "";
  for (const key of path) {
    if (typeof key === "number") out += `[${key}]`;
    else out += out ? `.${String(key)}` : String(key);
  }
  return out || "(root)";
}

/** Parse and validate runtime.yaml text; `source` names it in messages. */
export function parseConfig(text: string, source = "runtime.yaml"): RuntimeConfig {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      source,
      doc.errors.map((e) => {
        const pos = e.linePos?.[0];
        const where = pos ? `line ${pos.line}, column ${pos.col}` : "YAML";
        return `${where}: ${e.message.split("\n")[0]?.replace(/ at line \d+, column \d+:?$/, "")}`;
      }),
    );
  }
  const raw: unknown = doc.toJS() ?? {};

  const lineOf = (path: Path): string => {
    // The deepest node that exists on the path: for a missing key, its parent (not the whole document).
    for (let n = path.length; n >= 1; n--) {
      const node = doc.getIn(path.slice(0, n), true);
      if (isNode(node) && node.range) return ` (line ${lineCounter.linePos(node.range[0]).line})`;
    }
    return "";
  };

  const problems: string[] = [];
  const result = RuntimeConfigSchema.safeParse(raw);
  if (!result.success) {
    for (const issue of result.error.issues) {
      const missing = issue.code === "invalid_type" && !hasPath(raw, issue.path);
      const message = missing ? "required key is missing" : issue.message;
      problems.push(`${formatPath(issue.path)}: ${message}${lineOf(issue.path)}`);
    }
  }
  for (const path of unknownKeys(RuntimeConfigSchema, raw, [])) {
    problems.push(`${formatPath(path)}: unknown key${lineOf(path)}`);
  }
  if (problems.length > 0 || !result.success) throw new ConfigError(source, problems);
  return result.data;
}

function hasPath(value: unknown, path: Path): boolean {
  let node = value;
  for (const key of path) {
    if (typeof node !== "object" || node === null || !Object.hasOwn(node, key)) return false;
    node = (node as Record<PropertyKey, unknown>)[key];
  }
  return true;
}

/** Read and parse a runtime.yaml file. */
export async function loadConfig(file: string = DEFAULT_CONFIG_PATH): Promise<RuntimeConfig> {
  let text: string;
  try {
    const buf = await readFile(file);
    if (buf.length > MAX_CONFIG_BYTES) {
      throw new ConfigError(file, [`file is larger than ${MAX_CONFIG_BYTES} bytes`]);
    }
    text = buf.toString("utf8");
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError(file, [
      code === "ENOENT" ? "no such file" : `cannot read: ${(err as Error).message}`,
    ]);
  }
  return parseConfig(text, file);
}

/**
 * Keys present in `value` that `schema` does not declare (objects without a
 * catchall). Walks zod 4's definitions: wrappers (optional, default, …) are
 * unwrapped, objects and arrays descended; anything else is not inspected.
 */
function unknownKeys(schema: z.ZodType, value: unknown, path: PropertyKey[]): PropertyKey[][] {
  const def = (schema as unknown as { _zod: { def: Record<string, unknown> & { type: string } } })._zod.def;
  switch (def.type) {
    case "optional":
    case "nullable":
    case "default":
    case "prefault":
    case "readonly":
    case "catch":
    case "nonoptional":
      return unknownKeys(def.innerType as z.ZodType, value, path);
    case "pipe":
      return unknownKeys(def.in as z.ZodType, value, path);
    case "array":
      if (!Array.isArray(value)) return [];
      return value.flatMap((v, i) => unknownKeys(def.element as z.ZodType, v, [...path, i]));
    case "object": {
      if (typeof value !== "object" || value === null || Array.isArray(value)) return [];
      const shape = def.shape as Record<string, z.ZodType>;
      const out: PropertyKey[][] = [];
      for (const [k, v] of Object.entries(value)) {
        const field = shape[k];
        if (field) out.push(...unknownKeys(field, v, [...path, k]));
        else if (def.catchall === undefined) out.push([...path, k]);
      }
      return out;
    }
    default:
      return [];
  }
}

/** "host:port", "[v6]:port" or ":port" (all addresses) → listen() arguments. */
export function parseListenAddress(address: string): { host: string | undefined; port: number } {
  const m = /^(?:\[([0-9a-fA-F:]+)\]|([^:\s]*)):(\d{1,5})$/.exec(address);
  const port = Number(m?.[3]);
  if (!m || port > 65_535)
    throw new Error(`bad listen address ${JSON.stringify(address)}: expected host:port`);
  const host = m[1] ?? m[2];
  return { host: host ? host : undefined, port };
}
