// Secret values as the SDK hands them to mocks: wrapped, with the secret signature.
// The lab unwraps them to carry a step out, and remembers every secret it has
// seen so printed output can be scrubbed.

const SIG = "4dabf18193072939515e22adb298388d";
const SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270";

/** Shorter "secrets" (a port, "root") would scrub ordinary words from every message. */
const MIN_SECRET = 6;

export function isWrappedSecret(v: unknown): v is { value: unknown } {
  return typeof v === "object" && v !== null && (v as Record<string, unknown>)[SIG] === SECRET_SIG;
}

export function wrapSecret<T>(value: T): { [SIG]: string; value: T } {
  return { [SIG]: SECRET_SIG, value };
}

/** A deep copy with every wrapped secret replaced by its value. `seen` collects the secret strings. */
export function unwrap(v: unknown, seen?: Set<string>, inSecret = false): unknown {
  if (isWrappedSecret(v)) return unwrap(v.value, seen, true);
  if (Array.isArray(v)) return v.map((x) => unwrap(x, seen, inSecret));
  if (typeof v === "string") {
    if (inSecret && seen && v.length >= MIN_SECRET) seen.add(v);
    return v;
  }
  if (v && typeof v === "object" && Object.getPrototypeOf(v) === Object.prototype) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = unwrap(x, seen, inSecret);
    return out;
  }
  return v;
}

export function containsSecret(v: unknown): boolean {
  if (isWrappedSecret(v)) return true;
  if (Array.isArray(v)) return v.some(containsSecret);
  if (v && typeof v === "object") return Object.values(v).some(containsSecret);
  return false;
}

/** Replaces every known secret (and each of its lines, for multi-line keys) in text. */
export class Redactor {
  private readonly secrets = new Set<string>();
  add(s: string): void {
    if (s.length < MIN_SECRET) return;
    this.secrets.add(s);
    for (const line of s.split("\n")) if (line.trim().length >= 16) this.secrets.add(line.trim());
  }
  addAll(set: Iterable<string>): void {
    for (const s of set) this.add(s);
  }
  scrub(text: string): string {
    let out = text;
    for (const s of [...this.secrets].sort((a, b) => b.length - a.length))
      out = out.split(s).join("[secret]");
    return out;
  }
}
