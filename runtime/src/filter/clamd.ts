/**
 * ClamAV virus scan through clamd's INSTREAM (clamd-protocol.ts); clamd does
 * the MIME decoding. A signature found rejects the message with 554 5.7.1
 * naming it. A message over clamd's StreamMaxLength cannot be scanned: that
 * is recorded as "skip" with the reason (size limits belong to SMTP's SIZE,
 * not to a retry loop). clamd down or slow is an error result; the verdict
 * applies `onScannerFailure`. Every message is scanned, outbound included.
 */
import { clamdScan } from "./clamd-protocol.js";
import { clean, result } from "./context.js";
import type { CheckResult } from "./types.js";

export const CHECK = "clamd";

export async function clamd(
  cfg: { host: string; port: number; timeoutMs: number } | undefined,
  message: Buffer,
): Promise<CheckResult> {
  if (!cfg) return result(CHECK, "data", "skip", { detail: "not configured" });
  const started = performance.now();
  try {
    const r = await clamdScan(cfg, message);
    const ms = Math.round(performance.now() - started);
    switch (r.kind) {
      case "clean":
        return result(CHECK, "data", "pass", { ms });
      case "infected":
        return result(CHECK, "data", "fail", {
          detail: `virus ${clean(r.signature, 100)}`,
          action: "reject",
          code: 554,
          enhanced: "5.7.1",
          reply: `Message rejected: virus found (${clean(r.signature, 100)})`,
          ms,
        });
      case "too-large":
        return result(CHECK, "data", "skip", {
          detail: "larger than clamd's StreamMaxLength: not scanned",
          ms,
        });
      case "error":
        return result(CHECK, "data", "error", { detail: `clamd: ${r.text}`, ms });
    }
  } catch (err) {
    return result(CHECK, "data", "error", {
      detail: (err as Error).message,
      ms: Math.round(performance.now() - started),
    });
  }
}
