/**
 * SpamAssassin's score through spamd (spamd-protocol.ts). The score is added
 * to the message's total as it is — negative scores too — and the rules that
 * hit go into X-Spam-Status. Messages over `spamd.maxBytes` are not sent
 * (spamc skips them too); a dead or slow spamd is an error result, and the
 * verdict applies `onScannerFailure`. Trusted and authenticated senders are
 * not scored.
 */
import { result } from "./context.js";
import { spamdScan } from "./spamd-protocol.js";
import type { CheckResult } from "./types.js";

export const CHECK = "spamd";

export interface SpamdResult extends CheckResult {
  symbols?: string[];
}

export async function spamd(
  cfg: { host: string; port: number; timeoutMs: number; maxBytes: number } | undefined,
  message: Buffer,
): Promise<SpamdResult> {
  if (!cfg) return result(CHECK, "data", "skip", { detail: "not configured" });
  if (message.length > cfg.maxBytes) {
    return result(CHECK, "data", "skip", {
      detail: `${message.length} bytes > spamd.maxBytes ${cfg.maxBytes}`,
    });
  }
  const started = performance.now();
  try {
    const r = await spamdScan(cfg, message, "SYMBOLS");
    const ms = Math.round(performance.now() - started);
    const detail = `score=${r.score} required=${r.threshold} tests=${r.symbols.join(",") || "none"}`;
    return {
      ...result(CHECK, "data", r.isSpam ? "fail" : "pass", { score: r.score, detail, ms }),
      symbols: r.symbols,
    };
  } catch (err) {
    return result(CHECK, "data", "error", {
      detail: (err as Error).message,
      ms: Math.round(performance.now() - started),
    });
  }
}
