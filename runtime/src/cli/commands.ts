/**
 * The `mailinfra` command table: the first word picks the command, the rest is
 * its arguments. Commands are loaded lazily, so `mailinfra version` does not
 * initialise the protocol servers.
 *
 * Adding a command (e.g. queue/cli.ts):
 *   1. write the module; it exports a function that does the work and returns
 *      the exit code (0 ok, 1 failed, 2 usage), writing through `ctx.io`;
 *   2. add one entry to COMMANDS below: `name`, `usage` (one line per form),
 *      `summary`, and `load: () => import("../<module>/cli.js").then(...)`
 *      returning a `run(ctx)`. Use `ctx.loadConfig()` for runtime.yaml
 *      (it honours `--config`) — never read the YAML yourself;
 *   3. add a test in runtime/test/cli/ that runs the built bundle.
 */
import type { RuntimeConfig } from "../config/schema.js";

export interface CommandIo {
  out(line: string): void;
  err(line: string): void;
}

export interface CommandContext {
  /** Arguments after the command's name (global options removed). */
  args: string[];
  /** `--config` / `-c`, else /etc/mailinfra/runtime.yaml. */
  configPath: string;
  /** Load and validate `configPath`; throws ConfigError (reported by main with the key paths). */
  loadConfig(): Promise<RuntimeConfig>;
  io: CommandIo;
}

export type RunCommand = (ctx: CommandContext) => Promise<number>;

export interface Command {
  name: string;
  /** Usage lines, without the leading "mailinfra ". */
  usage: string[];
  summary: string;
  load(): Promise<RunCommand>;
}

export const COMMANDS: readonly Command[] = [
  {
    name: "serve",
    usage: ["serve <service> [--config FILE]"],
    summary: "run one service (smtp, lmtp, imap, pop3, …) until SIGTERM",
    load: () => import("./serve.js").then((m) => m.runServe),
  },
  {
    name: "config",
    usage: ["config check [FILE]"],
    summary: "validate runtime.yaml; prints ok or each problem with its key path",
    load: () => import("./config-check.js").then((m) => m.runConfig),
  },
  {
    name: "queue",
    usage: ["queue list | show <id> | flush | remove <id> | release <id> [--config FILE]"],
    summary: "inspect and manage the mail queue (queue.dir)",
    load: () =>
      import("../queue/cli.js").then(({ runQueueCommand }) => async (ctx: CommandContext) => {
        const config = await ctx.loadConfig();
        if (!config.queue) {
          ctx.io.err(`${ctx.configPath}: no \`queue\` section`);
          return 1;
        }
        return runQueueCommand(config.queue.dir, ctx.args, ctx.io);
      }),
  },
  {
    name: "version",
    usage: ["version"],
    summary: "print the version",
    load: () => import("./version.js").then((m) => m.runVersion),
  },
];

export function findCommand(name: string): Command | undefined {
  return COMMANDS.find((c) => c.name === name);
}

export function usageText(): string {
  const lines = COMMANDS.flatMap((c) => c.usage.map((u) => `  mailinfra ${u}`));
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    "usage:",
    ...lines,
    "",
    "commands:",
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
  ].join("\n");
}
