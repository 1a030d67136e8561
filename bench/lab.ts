// Figures for the lab (not a timed test): time from nothing to a deployed lab
// (11 hosts up, the lab stack applied), a no-op re-apply, and per-host step
// times. Targets on a 2-core machine: < 3 min from nothing, < 30 s re-apply.
//   tsx bench/lab.ts [--keep] [--program FILE --stack-file FILE]
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { ApplyReport } from "../lab/apply/applier.js";
import { hostNames, REPORT_FILE } from "../lab/apply/cli.js";
import { perHost } from "../lab/apply/progress.js";
import { runLabCli } from "../lab/cli-process.js";
import { labLock } from "../lab/lock.js";
import { REPO_ROOT } from "../lab/paths.js";

const TARGET_DEPLOY_MS = 180_000;
const TARGET_REAPPLY_MS = 30_000;

const lab = (args: string[]) => runLabCli(args);

const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const keep = argv.includes("--keep");
  let programArgs = argv.filter((a) => a !== "--keep");
  if (!programArgs.includes("--program") && !existsSync(join(REPO_ROOT, "index.ts"))) {
    console.log("bench: index.ts is not there yet: using the applier's test program");
    programArgs = [
      "--program",
      join(REPO_ROOT, "test/lab/fixtures/program/index.ts"),
      "--stack-file",
      join(REPO_ROOT, "test/lab/fixtures/Pulumi.fixture.yaml"),
    ];
  }
  const unlock = await labLock();
  const clean = await lab(["down"]);
  if (clean.code !== 0) throw new Error(clean.out);

  const deploy = await lab(["deploy", ...programArgs]);
  if (!existsSync(REPORT_FILE) || !/^apply: /m.test(deploy.out)) {
    console.log(deploy.out);
    throw new Error("deploy did not get to apply");
  }
  const first = JSON.parse(readFileSync(REPORT_FILE, "utf8")) as ApplyReport;
  const upLine = /prepare ([\d.]+) s, boot ([\d.]+) s/.exec(deploy.out);

  const reapply = await lab(["apply", ...programArgs]);
  const second = JSON.parse(readFileSync(REPORT_FILE, "utf8")) as ApplyReport;

  const names = hostNames();
  const firstHosts = perHost(first);
  const secondHosts = new Map(perHost(second).map((h) => [h.host, h]));

  console.log("\nmailinfra lab figures");
  console.log(`  nothing -> deployed     ${s(deploy.ms).padStart(8)}  (target < ${s(TARGET_DEPLOY_MS)})`);
  if (upLine)
    console.log(
      `    hosts up              ${s(Number(upLine[1]) * 1000 + Number(upLine[2]) * 1000).padStart(8)}  (prepare ${upLine[1]} s, boot ${upLine[2]} s)`,
    );
  console.log(
    `    apply                 ${s(first.ms).padStart(8)}  (${first.done} of ${first.total} steps)`,
  );
  for (const [name, r] of [
    ["first apply", first],
    ["re-apply", second],
  ] as const) {
    if (!r.ok) {
      console.log(
        `  NOTE ${name}: ${r.failed.length} failed: ${r.failed.map((f) => f.name).join(", ")}; ${r.skipped.length} skipped`,
      );
    }
  }
  console.log(
    `  no-op re-apply          ${s(reapply.ms).padStart(8)}  (target < ${s(TARGET_REAPPLY_MS)}; applier ${s(second.ms)}, ${second.done} steps)`,
  );
  console.log("  per host (first apply / re-apply): steps, span, time in steps");
  for (const h of firstHosts) {
    const r = secondHosts.get(h.host);
    console.log(
      `    ${(names[h.host] ?? h.host).padEnd(9)} ${String(h.steps).padStart(4)} ${s(h.spanMs).padStart(8)} ${s(h.busyMs).padStart(8)}` +
        (r ? `   / ${s(r.spanMs).padStart(7)} ${s(r.busyMs).padStart(7)}` : ""),
    );
  }
  for (const [label, r] of [
    ["first apply", first],
    ["re-apply", second],
  ] as const) {
    const slow = [...r.steps].sort((a, b) => (b.ms ?? 0) - (a.ms ?? 0)).slice(0, 5);
    console.log(`  slowest steps (${label}):`);
    for (const st of slow)
      console.log(`    ${s(st.ms ?? 0).padStart(7)}  ${names[st.host ?? ""] ?? st.host}  ${st.name}`);
  }

  if (!keep) {
    const d = await lab(["down"]);
    console.log(`  teardown                ${s(d.ms).padStart(8)}`);
  }
  unlock();
  return first.ok && second.ok && deploy.ms < TARGET_DEPLOY_MS && reapply.ms < TARGET_REAPPLY_MS ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err instanceof Error ? err.message : String(err));
    process.exit(2);
  },
);
