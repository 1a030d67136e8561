/**
 * What the bundle needs from Node.js 20 that Debian 12's Node.js 18
 * (18.20.4) lacks, filled in before any other module loads (main.ts imports
 * this file first). Each shim is installed only where the global is missing,
 * so on Node 20 this file changes nothing. runtime/test/cli/node18.test.ts
 * runs the bundle on both.
 *
 * - `File` as a global (Node >= 20): undici 7 — which mailauth loads for
 *   BIMI — builds its WebIDL type checks from `File` when it is loaded, so
 *   `serve smtp` died with "File is not defined". Node 18 has the same class
 *   as `buffer.File` (experimental there; its one-time ExperimentalWarning,
 *   given at the first `new File`, is spent here off stderr).
 * - `String.prototype.isWellFormed` / `toWellFormed` (ES2024, Node >= 20):
 *   undici's WebIDL USVString conversion (headers, URLs of a fetch) calls
 *   them. Only mailauth's BIMI certificate download (validateVMC, which the
 *   runtime does not call today) reaches it; the shims keep that from
 *   becoming a TypeError on 18. Lone surrogates are the only ill-formed code
 *   units; node18.test.ts checks the shims answer as Node 20's natives do.
 */
import * as buffer from "node:buffer";

const g = globalThis as { File?: unknown };
if (typeof g.File === "undefined") {
  const emitWarning = process.emitWarning;
  process.emitWarning = () => {};
  try {
    const File = (buffer as unknown as { File: new (parts: string[], name: string) => unknown }).File;
    // Node 18 warns once, at the first `new File`: spend that warning here, unheard.
    new File([], "compat");
    g.File = File;
  } finally {
    process.emitWarning = emitWarning;
  }
}

// A lone surrogate: a high one not followed by a low one, or a low one not preceded by a high one.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const LONE_SURROGATES = new RegExp(LONE_SURROGATE.source, "g");
const proto = String.prototype as { isWellFormed?: () => boolean; toWellFormed?: () => string };
if (typeof proto.isWellFormed !== "function") {
  Object.defineProperty(String.prototype, "isWellFormed", {
    configurable: true,
    writable: true,
    value: function isWellFormed(this: unknown): boolean {
      return !LONE_SURROGATE.test(String(this));
    },
  });
}
if (typeof proto.toWellFormed !== "function") {
  Object.defineProperty(String.prototype, "toWellFormed", {
    configurable: true,
    writable: true,
    value: function toWellFormed(this: unknown): string {
      return String(this).replace(LONE_SURROGATES, "\uFFFD");
    },
  });
}
