// What the applier shows: progress while it runs (steps done of those declared,
// the step now running on each host) and a summary at the end.
import type { ApplyEvent, ApplyReport, StepRecord } from "./applier.js";

const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

export class Progress {
  private declared = 0;
  private finished = 0;
  private readonly running = new Map<string, StepRecord[]>();
  private lastLine = 0;
  private readonly tty: boolean;
  /** `hostNames`: address → host name, as the summary shows them. */
  constructor(
    private readonly out: Pick<NodeJS.WriteStream, "write" | "isTTY" | "columns"> = process.stdout,
    private readonly hostNames: Record<string, string> = {},
  ) {
    this.tty = Boolean(out.isTTY);
  }

  on = (e: ApplyEvent): void => {
    if (e.kind === "declared") {
      this.declared++;
      return;
    }
    const host = e.step.host ? (this.hostNames[e.step.host] ?? e.step.host) : "?";
    const list = this.running.get(host) ?? [];
    if (e.kind === "start") {
      list.push(e.step);
      this.running.set(host, list);
    } else {
      this.finished++;
      const i = list.indexOf(e.step);
      if (i >= 0) list.splice(i, 1);
      if (!this.tty || e.step.state === "failed") {
        const mark = e.step.state === "failed" ? "FAILED" : "ok";
        this.write(
          `[${this.count()}] ${mark.padEnd(6)} ${host.padEnd(12)} ${e.step.name} (${secs(e.step.ms ?? 0)})`,
        );
      }
    }
    this.redraw();
  };

  private count(): string {
    const total = String(Math.max(this.declared, this.finished));
    return `${String(this.finished).padStart(total.length)}/${total}`;
  }

  /** The step now running per host: on a terminal one line kept current, else every 5 s. */
  private redraw(): void {
    const now = [...this.running.entries()]
      .filter(([, l]) => l.length)
      .map(([h, l]) => `${h}: ${l[0]?.name}${l.length > 1 ? ` +${l.length - 1}` : ""}`);
    if (this.tty) {
      const cols = this.out.columns || 120;
      this.out.write(`\r\x1b[K${`[${this.count()}] ${now.join(" | ")}`.slice(0, cols - 1)}`);
    } else if (Date.now() - this.lastLine > 5000 && now.length) {
      this.lastLine = Date.now();
      this.out.write(`running: ${now.join(" | ")}\n`);
    }
  }

  private write(line: string): void {
    if (this.tty) this.out.write(`\r\x1b[K${line}\n`);
    else this.out.write(`${line}\n`);
  }

  end(): void {
    if (this.tty) this.out.write("\r\x1b[K");
  }
}

export function perHost(
  report: ApplyReport,
): { host: string; steps: number; busyMs: number; spanMs: number }[] {
  const by = new Map<string, StepRecord[]>();
  for (const s of report.steps) {
    if (s.startedAt === undefined) continue;
    const h = s.host ?? "?";
    by.set(h, [...(by.get(h) ?? []), s]);
  }
  return [...by.entries()]
    .map(([host, list]) => {
      const start = Math.min(...list.map((s) => s.startedAt ?? 0));
      const end = Math.max(...list.map((s) => (s.startedAt ?? 0) + (s.ms ?? 0)));
      return {
        host,
        steps: list.length,
        busyMs: list.reduce((a, s) => a + (s.ms ?? 0), 0),
        spanMs: end - start,
      };
    })
    .sort((a, b) => a.host.localeCompare(b.host));
}

export function summary(report: ApplyReport, hostNames: Record<string, string> = {}): string {
  const name = (h: string | undefined) => (h ? (hostNames[h] ?? h) : "?");
  const lines: string[] = [];
  lines.push(
    `apply: ${report.done} of ${report.total} steps done in ${secs(report.ms)}` +
      (report.ok ? "" : `; ${report.failed.length} failed, ${report.skipped.length} skipped`),
  );
  if (report.failed.length) {
    lines.push("", `failed (${report.failed.length}):`);
    for (const s of report.failed) {
      lines.push(`  ${name(s.host)}  ${s.name}  [${s.type}]`);
      if (s.command) lines.push(`    command: ${s.command.split("\n").join("\n             ")}`);
      // The provider's message repeats the command (Go-quoted): shown once above, readable.
      const m =
        /^(Process exited with (?:status \d+|signal \S+)): running "(?:[^"\\]|\\.)*":\n([\s\S]*)$/.exec(
          s.error ?? "",
        );
      const text = m ? `${m[1]}; output:\n${m[2]?.trimEnd() || "(none)"}` : (s.error ?? "").trimEnd();
      lines.push(`    ${text.split("\n").join("\n    ")}`);
    }
  }
  if (report.skipped.length) {
    lines.push("", `skipped because something they depend on failed (${report.skipped.length}):`);
    for (const s of report.skipped) lines.push(`  ${name(s.host)}  ${s.name}  [${s.type}]`);
  }
  if (report.programErrors.length) {
    lines.push("", "program errors:");
    for (const e of report.programErrors) lines.push(`  ${e.split("\n").join("\n  ")}`);
  }
  const hosts = perHost(report);
  if (hosts.length) {
    lines.push("", "per host: steps, time from its first step to its last, time in steps");
    for (const h of hosts) {
      lines.push(
        `  ${name(h.host).padEnd(10)} ${String(h.steps).padStart(4)}  ${secs(h.spanMs).padStart(7)}  ${secs(h.busyMs).padStart(7)}`,
      );
    }
  }
  return lines.join("\n");
}
