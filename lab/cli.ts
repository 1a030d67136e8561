// The lab's command line: `tsx lab/cli.ts <command>` (npm run lab = deploy).
import { spawnSync } from "node:child_process";
import { down, kill, ms, start, status, up } from "./lab.js";
import { paths } from "./paths.js";
import { HOST_NAMES, type HostName, loadTopology } from "./topology.js";

const USAGE = `usage: lab <command>
  up                 boot the 11 hosts (clears what a crashed run left first)
  down               remove the lab: guests, mounts, overlays, loop device, bridge, cgroups
  status             each host's state and SSH, the bridge, the SAN loop device
  ssh <host> [cmd]   a root shell (or one command) on a host
  kill <host>        power cut: SIGKILL to the host's PID 1
  start <host>       boot a host again after a power cut
  apply              apply the lab stack (index.ts) to the running hosts
                     (--no-build: keep the runtime bundle already built;
                      --stack-file FILE: another lab stack file;
                      --secrets-file FILE: a 0600 JSON object of secrets to give,
                      e.g. {"tlsCertificate": "...", "tlsPrivateKey": "..."})
  deploy             up if needed, apply, then print how to reach the system`;

const log = (m: string) => console.log(`lab: ${m}`);

function hostArg(arg: string | undefined): HostName {
  if (!arg || !(HOST_NAMES as readonly string[]).includes(arg)) {
    throw new Error(`expected a host name: ${HOST_NAMES.join(" ")}`);
  }
  return arg as HostName;
}

async function printStatus(): Promise<void> {
  const s = await status();
  for (const h of s.hosts) {
    const state = h.running ? `running (PID 1 = ${h.init})` : "stopped";
    console.log(`${h.host.padEnd(9)} ${h.address.padEnd(13)} ${state.padEnd(26)} ssh ${h.ssh ? "ok" : "-"}`);
  }
  console.log(
    `bridge ${s.bridge ? "up" : "absent"}; SAN loop ${s.loops.join(" ") || "none"}; mounts ${s.mounts.length}`,
  );
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case "up":
      await up(log);
      return 0;
    case "down":
      await down(log);
      log("down: nothing of the lab is left on this machine");
      return 0;
    case "status":
      await printStatus();
      return 0;
    case "ssh": {
      const h = hostArg(rest[0]);
      const t = loadTopology();
      const args = [
        "-i",
        paths.key,
        "-o",
        `UserKnownHostsFile=${paths.knownHosts}`,
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "IdentitiesOnly=yes",
        `root@${t.addresses[h]}`,
        ...rest.slice(1),
      ];
      return spawnSync("ssh", args, { stdio: "inherit" }).status ?? 1;
    }
    case "kill":
      await kill(hostArg(rest[0]));
      log(`${rest[0]}: power cut`);
      return 0;
    case "start":
      await start(hostArg(rest[0]), log);
      return 0;
    case "apply":
    case "deploy": {
      const { applyCli } = await import("./apply/cli.js");
      return applyCli(cmd, rest, log);
    }
    default:
      console.error(USAGE);
      return cmd === undefined || cmd === "help" || cmd === "--help" ? 0 : 2;
  }
}

const t0 = Date.now();
main(process.argv.slice(2)).then(
  (code) => {
    if (process.argv[2] !== "ssh") log(`done in ${ms(Date.now() - t0)}`);
    process.exit(code);
  },
  (err: unknown) => {
    console.error(`lab: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
