import { describe, expect, it } from "vitest";
import type { ApplyReport } from "./applier.js";
import { summary } from "./progress.js";

describe("the applier's summary", () => {
  it("shows each failed step with host, command and output, then the skipped ones", () => {
    const report: ApplyReport = {
      ok: false,
      ms: 4200,
      total: 3,
      done: 1,
      failed: [
        {
          type: "command:remote:Command",
          name: "ldap-ldap1-configure",
          host: "198.18.0.31",
          command: 'set -eu\necho "x"',
          state: "failed",
          error: 'Process exited with status 1: running "set -eu\\necho \\"x\\"":\nx\nslaptest failed\n',
          startedAt: 1000,
          ms: 300,
        },
      ],
      skipped: [
        {
          type: "command:remote:Command",
          name: "ldap-ldap2-configure",
          host: "198.18.0.32",
          state: "waiting",
        },
      ],
      programErrors: [],
      steps: [],
    };
    expect(summary(report, { "198.18.0.31": "ldap1", "198.18.0.32": "ldap2" })).toBe(
      [
        "apply: 1 of 3 steps done in 4.2 s; 1 failed, 1 skipped",
        "",
        "failed (1):",
        "  ldap1  ldap-ldap1-configure  [command:remote:Command]",
        "    command: set -eu",
        '             echo "x"',
        "    Process exited with status 1; output:",
        "    x",
        "    slaptest failed",
        "",
        "skipped because something they depend on failed (1):",
        "  ldap2  ldap-ldap2-configure  [command:remote:Command]",
      ].join("\n"),
    );
  });
});
