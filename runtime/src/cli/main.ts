/**
 * `mailinfra`: the runtime's one executable (runtime/dist/mailinfra.mjs).
 * Global options: `--config FILE` / `-c FILE` (default
 * /etc/mailinfra/runtime.yaml), `--help`. Commands: see commands.ts.
 * Exit codes: 0 ok, 1 failed (reason on stderr or in the log), 2 usage.
 */
// First: fills in what Node 18 lacks before any other module loads.
import "./compat.js";
import { parseArgs } from "node:util";
import { ConfigError, DEFAULT_CONFIG_PATH, loadConfig } from "../config/load.js";
import { type CommandContext, type CommandIo, findCommand, usageText } from "./commands.js";

const io: CommandIo = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
};

export async function main(argv: string[]): Promise<number> {
  let parsed: ReturnType<
    typeof parseArgs<{
      options: { config: { type: "string"; short: "c" }; help: { type: "boolean"; short: "h" } };
      allowPositionals: true;
      strict: true;
    }>
  >;
  try {
    parsed = parseArgs({
      args: argv,
      options: { config: { type: "string", short: "c" }, help: { type: "boolean", short: "h" } },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    io.err(`mailinfra: ${(err as Error).message}`);
    io.err(usageText());
    return 2;
  }
  const [name, ...args] = parsed.positionals;
  if (parsed.values.help || !name) {
    (name || parsed.values.help ? io.out : io.err)(usageText());
    return parsed.values.help ? 0 : 2;
  }
  const command = findCommand(name);
  if (!command) {
    io.err(`mailinfra: unknown command ${JSON.stringify(name)}`);
    io.err(usageText());
    return 2;
  }
  const configPath = parsed.values.config ?? DEFAULT_CONFIG_PATH;
  const ctx: CommandContext = { args, configPath, loadConfig: () => loadConfig(configPath), io };
  try {
    const run = await command.load();
    return await run(ctx);
  } catch (err) {
    if (err instanceof ConfigError) {
      for (const p of err.problems) io.err(`${err.source}: ${p}`);
      return 1;
    }
    // Expected failures are reported by the commands; this is the unexpected rest.
    io.err(`mailinfra ${name}: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
}

const code = await main(process.argv.slice(2));
// Let stdout drain, then leave even if a library kept a handle open.
process.stdout.write("", () => process.exit(code));
