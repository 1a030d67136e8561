/** The verdict policy as a pure function: results and config in, verdict out. */
import { describe, expect, it } from "vitest";
import type { CheckResult } from "../../src/filter/types.js";
import { decide, foldList } from "../../src/filter/verdict.js";
import { filterConfig } from "./daemons.js";

const r = (check: string, extra: Partial<CheckResult> = {}): CheckResult => ({
  check,
  stage: "data",
  outcome: "pass",
  ...extra,
});
const config = filterConfig({ spamTagScore: 5, spamRejectScore: 12 });

describe("decide", () => {
  it("a reject beats a scanner failure and a tempfail", () => {
    const v = decide(
      config,
      [
        r("rate", { action: "tempfail", code: 421, enhanced: "4.7.0" }),
        r("spamd", { outcome: "error" }),
        r("clamd", { outcome: "fail", action: "reject", code: 554, enhanced: "5.7.1", reply: "virus" }),
      ],
      { stage: "data", scored: true },
    );
    expect(v).toMatchObject({
      action: "reject",
      code: 554,
      enhanced: "5.7.1",
      message: "virus",
      decidedBy: "clamd",
    });
  });

  it("a scanner error tempfails only when the policy is closed", () => {
    const results = [r("clamd", { outcome: "error", detail: "clamd: ECONNREFUSED" })];
    expect(decide(config, results, { stage: "data", scored: true })).toMatchObject({
      action: "tempfail",
      code: 451,
    });
    const open = filterConfig({ onScannerFailure: "open" });
    expect(decide(open, results, { stage: "data", scored: true }).action).toBe("accept");
  });

  it("errors of other checks (DNS) never tempfail", () => {
    const v = decide(config, [r("dnsbl", { outcome: "error" }), r("spf", { outcome: "error" })], {
      stage: "data",
      scored: true,
    });
    expect(v.action).toBe("accept");
  });

  it("scores add up across stages: tag at spamTagScore, reject at spamRejectScore", () => {
    const at = (n: number) =>
      decide(config, [r("dnsbl", { stage: "connect", score: 1 }), r("spamd", { score: n - 1 })], {
        stage: "data",
        scored: true,
        symbols: ["BAYES_99"],
      });
    expect(at(4.9).action).toBe("accept");
    const tagged = at(5);
    expect(tagged.action).toBe("tag");
    expect(tagged.addHeaders).toEqual([
      ["X-Spam-Status", "Yes, score=5.0 required=5.0 tests=BAYES_99,MI_DNSBL"],
      ["X-Spam-Score", "5.0"],
      ["X-Spam-Flag", "YES"],
    ]);
    expect(at(12)).toMatchObject({ action: "reject", code: 550, decidedBy: "spamRejectScore" });
  });

  it("before DATA nothing is scored into a verdict", () => {
    expect(decide(config, [r("dnsbl", { score: 100 })], { stage: "rcpt", scored: true }).action).toBe(
      "accept",
    );
  });

  it("DISCARD wins over HOLD", () => {
    const v = decide(config, [r("a", { disposition: "hold" }), r("b", { disposition: "discard" })], {
      stage: "data",
      scored: true,
    });
    expect(v.disposition).toBe("discard");
  });

  it("folds long rule lists", () => {
    const folded = foldList(Array.from({ length: 30 }, (_, i) => `RULE_NUMBER_${i}`)).join(",");
    for (const line of `X-Spam-Status: Yes, score=9.9 required=5.0 tests=${folded}`.split("\r\n")) {
      expect(line.length).toBeLessThanOrEqual(78);
    }
  });
});
