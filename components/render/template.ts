/**
 * Loads the handlebars templates under `templates/<subsystem>/`. Rendered files
 * are configuration, never HTML: `noEscape` keeps `<`, `&` and quotes intact, and
 * `strict` makes a missing field throw instead of rendering an empty string.
 */
import { readFileSync } from "node:fs";
import Handlebars from "handlebars";

const cache = new Map<string, Handlebars.TemplateDelegate>();

/** Path of a template file, relative to the repository's `templates/` folder. */
export function templateUrl(relativePath: string): URL {
  return new URL(`../../templates/${relativePath}`, import.meta.url);
}

/** Renders `templates/<relativePath>` with `view`. */
export function renderTemplate(relativePath: string, view: object): string {
  let compiled = cache.get(relativePath);
  if (compiled === undefined) {
    const source = readFileSync(templateUrl(relativePath), "utf8");
    compiled = Handlebars.compile(source, { noEscape: true, strict: true });
    cache.set(relativePath, compiled);
  }
  return compiled(view);
}

/** Thrown for input a renderer cannot turn into a valid file; `field` names the parameter. */
export class RenderError extends Error {
  constructor(
    readonly renderer: string,
    readonly field: string,
    message: string,
  ) {
    super(`${renderer}: ${field}: ${message}`);
    this.name = "RenderError";
  }
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** A dotted-quad IPv4 address without leading zeros. */
export function isIPv4(value: string): boolean {
  return IPV4.test(value);
}

/** A host name per RFC 1123 §2.1 (labels of letters, digits and hyphens). */
export function isHostName(value: string): boolean {
  return (
    value.length <= 253 &&
    value.split(".").every((label) => /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(label))
  );
}

/** For an exhaustive `switch` over a union: fails to compile when a member is not handled. */
export function assertNever(value: never, what: string): never {
  throw new Error(`unhandled ${what}: ${String(value)}`);
}
