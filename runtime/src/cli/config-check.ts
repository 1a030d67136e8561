/**
 * `mailinfra config check [FILE]`: the deployer's template tests and ops run
 * it on a rendered runtime.yaml. Prints `ok` (exit 0) or one line per problem,
 * each naming the key path, e.g. `imap.listen[0]: expected host:port … (line 12)`
 * (exit 1). Referenced files (certificates, password files) are not opened:
 * the check runs where the config was rendered, not on the host.
 */
import { ConfigError, loadConfig } from "../config/load.js";
import type { CommandContext } from "./commands.js";

export async function runConfig(ctx: CommandContext): Promise<number> {
  const [verb, file, ...extra] = ctx.args;
  if (verb !== "check" || extra.length > 0) {
    ctx.io.err("usage: mailinfra config check [FILE]");
    return 2;
  }
  const path = file ?? ctx.configPath;
  try {
    await loadConfig(path);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    for (const problem of err.problems) ctx.io.err(`${path}: ${problem}`);
    return 1;
  }
  ctx.io.out("ok");
  return 0;
}
