// `lab apply` and `lab deploy` (= up if needed, apply, then how to reach the system).
import { existsSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { run } from "../exec.js";
import { isUp, up } from "../lab.js";
import { paths, REPO_ROOT } from "../paths.js";
import { BRIDGE_ADDRESS, HOST_NAMES, LAB_STACK_FILE, loadTopology, type Topology } from "../topology.js";
import { type ApplyReport, apply } from "./applier.js";
import { Progress, summary } from "./progress.js";
import { labStackConfig, readSecretsFile } from "./stack-config.js";

export const PROJECT = "mailinfra";
export const STACK = "lab";
export const REPORT_FILE = join(paths.state, "last-apply.json");

export interface ApplyArgs {
  program: string;
  stackFile: string;
  /** Skip `npm run build`: apply the bundle already built (a no-op re-apply of the same build). */
  noBuild?: boolean;
  /** A JSON file (mode 0600) of secrets the operator gives, e.g. tlsCertificate and tlsPrivateKey. */
  secretsFile?: string;
}

export function parseApplyArgs(argv: string[]): ApplyArgs {
  const args: ApplyArgs = { program: join(REPO_ROOT, "index.ts"), stackFile: LAB_STACK_FILE };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[i + 1];
    if (a === "--no-build") {
      args.noBuild = true;
      continue;
    }
    if (a === "--program" && v) args.program = resolve(v);
    else if (a === "--stack-file" && v) args.stackFile = resolve(v);
    else if (a === "--secrets-file" && v) args.secretsFile = resolve(v);
    else
      throw new Error(
        `unknown argument ${a} (expected --program FILE, --stack-file FILE, --secrets-file FILE, --no-build)`,
      );
    i++;
  }
  return args;
}

/** The program copies the runtime bundle to the hosts: build it first (it is not in git; 0.5 s). */
async function buildRuntime(log: (m: string) => void): Promise<void> {
  const r = await run("npm", ["run", "--silent", "build"], { allowFail: true, cwd: REPO_ROOT });
  if (r.code !== 0) throw new Error(`npm run build failed:\n${r.stdout}${r.stderr}`);
  log("runtime bundle built (runtime/dist/mailinfra.mjs)");
}

export async function applyLab(args: ApplyArgs, log: (m: string) => void): Promise<ApplyReport> {
  for (const h of HOST_NAMES) {
    if (!(await isUp(h))) throw new Error(`${h} is not running: run \`lab up\` (or \`npm run lab\`) first`);
  }
  if (!existsSync(args.program)) throw new Error(`${args.program}: the program is not there`);
  if (args.program === join(REPO_ROOT, "index.ts") && !args.noBuild) await buildRuntime(log);
  const given = args.secretsFile ? await readSecretsFile(args.secretsFile) : {};
  const stack = await labStackConfig(args.stackFile, PROJECT, [], given);
  log(
    `applying ${args.program} (stack ${STACK}, ${existsSync(args.stackFile) ? args.stackFile : "no stack file"})`,
  );
  if (stack.generated.length) log(`lab-supplied config: ${stack.generated.join(", ")}`);
  if (args.secretsFile) log(`given secrets (${args.secretsFile}): ${Object.keys(given).join(", ")}`);
  const progress = new Progress(process.stdout, hostNames(loadTopology()));
  const report = await apply({
    program: args.program,
    project: PROJECT,
    stack: STACK,
    config: stack.config,
    secretKeys: stack.secretKeys,
    onEvent: progress.on,
  });
  progress.end();
  await writeFile(REPORT_FILE, `${JSON.stringify(report, null, 2)}\n`, { mode: 0o600 });
  return report;
}

/** Address → host name, for what the applier shows. */
export function hostNames(t: Topology = loadTopology()): Record<string, string> {
  const names: Record<string, string> = {};
  for (const h of HOST_NAMES) names[t.addresses[h]] = h;
  return names;
}

function howToReach(t: Topology, report: ApplyReport): string {
  const services = report.outputs?.services as Record<string, { notInThisBuild?: string[] }> | undefined;
  const lacks = (h: string, service: string) =>
    services?.[h]?.notInThisBuild?.includes(service) ? " (not in this runtime build yet)" : "";
  const lines = [
    "",
    "The lab is deployed. From this machine:",
    `  hosts       ${HOST_NAMES.map((h) => `${h} ${t.addresses[h]}`).join(", ")}`,
    `  mail store  ${t.vip} (the store pair's virtual IP: IMAP 143/993, POP3 110/995, LMTP 24${lacks("store1", "managesieve") ? "" : ", ManageSieve 4190"})`,
    `  MX          ${t.addresses.mx1}:25, ${t.addresses.mx2}:25`,
    `  submission  ${t.addresses.relay1}:587, ${t.addresses.relay2}:587`,
    `  webmail     http://${t.addresses.webmail1}/, http://${t.addresses.webmail2}/${lacks("webmail1", "webmail")}`,
    `  LDAP        ldap://${t.addresses.ldap1} (provider), ldap://${t.addresses.ldap2} (replica)`,
    "  a shell     npm run lab:ssh -- <host>     (e.g. npm run lab:ssh -- store1)",
    "  status      npm run lab:status",
    "  power cut   npm run lab:kill -- store1, then npm run lab:start -- store1",
    "  remove all  npm run lab:down",
    `The machine is ${BRIDGE_ADDRESS} on the lab's bridge; secrets are in ${paths.secrets} (0600).`,
  ];
  return lines.join("\n");
}

/** The program's `services` output: which role services this runtime build does not have. */
export function notInThisBuild(report: ApplyReport): string | undefined {
  const services = report.outputs?.services as
    | Record<string, { runs?: string[]; notInThisBuild?: string[] }>
    | undefined;
  if (!services) return undefined;
  const lines = Object.entries(services)
    .filter(([, s]) => (s.notInThisBuild ?? []).length > 0)
    .map(([h, s]) => `  ${h.padEnd(9)} ${s.notInThisBuild!.join(", ")}`);
  return lines.length === 0
    ? "every role service is in this runtime build"
    : ["not in this runtime build (not installed, not started):", ...lines].join("\n");
}

export async function applyCli(
  cmd: "apply" | "deploy",
  argv: string[],
  log: (m: string) => void,
): Promise<number> {
  const args = parseApplyArgs(argv);
  if (cmd === "deploy") await up(log);
  const t = loadTopology();
  const report = await applyLab(args, log);
  console.log(summary(report, hostNames(t)));
  const missing = notInThisBuild(report);
  if (missing) console.log(missing);
  if (cmd === "deploy" && report.ok) console.log(howToReach(t, report));
  // Non-zero before exit also keeps the SDK from reporting the failed steps'
  // never-settled dependents as leaked promises.
  process.exitCode = report.ok ? 0 : 1;
  return process.exitCode;
}
