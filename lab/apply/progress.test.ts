import { describe, expect, it } from "vitest";
import type { ApplyReport, StepRecord } from "./applier.js";
import { Progress, summary } from "./progress.js";

/** A stand-in for the terminal (or a log file when not a TTY) that keeps what was written. */
function screen(tty: boolean) {
  const out = {
    isTTY: tty,
    columns: 200,
    text: "",
    write(s: string) {
      out.text += s;
      return true;
    },
  };
  return out;
}

describe("the applier's progress", () => {
  const step = (name: string, host: string): StepRecord => ({
    type: "command:remote:Command",
    name,
    host,
    state: "running",
  });
  const names = { "198.18.0.11": "mx1", "198.18.0.31": "ldap1" };

  it("on a terminal: steps done of those declared, and the step now running on each host", () => {
    const out = screen(true);
    const p = new Progress(out, names);
    const [a, b, c] = [
      step("mx1-base", "198.18.0.11"),
      step("ldap1-base", "198.18.0.31"),
      step("mx1-bundle", "198.18.0.11"),
    ];
    for (const s of [a, b, c]) p.on({ kind: "declared", step: s });
    p.on({ kind: "start", step: a });
    p.on({ kind: "start", step: b });
    expect(out.text.split("\r\x1b[K").pop()).toBe("[0/3] mx1: mx1-base | ldap1: ldap1-base");
    a.state = "done";
    a.ms = 1500;
    p.on({ kind: "end", step: a });
    expect(out.text.split("\r\x1b[K").pop()).toBe("[1/3] ldap1: ldap1-base");
    b.state = "failed";
    b.ms = 200;
    p.on({ kind: "end", step: b });
    // A failure is printed as a line of its own and stays on the screen.
    expect(out.text).toContain("[2/3] FAILED ldap1        ldap1-base (0.2 s)\n");
  });

  it("in a log (no terminal): one line per finished step, with the count", () => {
    const out = screen(false);
    const p = new Progress(out, names);
    const a = step("mx1-base", "198.18.0.11");
    p.on({ kind: "declared", step: a });
    p.on({ kind: "declared", step: step("x", "198.18.0.31") });
    p.on({ kind: "start", step: a });
    expect(out.text).toBe("running: mx1: mx1-base\n");
    a.state = "done";
    a.ms = 2000;
    p.on({ kind: "end", step: a });
    expect(out.text).toBe("running: mx1: mx1-base\n[1/2] ok     mx1          mx1-base (2.0 s)\n");
  });
});

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
