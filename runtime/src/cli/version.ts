/** `mailinfra version`. build.mjs defines __MAILINFRA_VERSION__ and __MAILINFRA_COMMIT__ in the bundle. */
import type { CommandContext } from "./commands.js";

declare const __MAILINFRA_VERSION__: string | undefined;
declare const __MAILINFRA_COMMIT__: string | undefined;

export const VERSION: string =
  typeof __MAILINFRA_VERSION__ === "string" ? __MAILINFRA_VERSION__ : "0.0.0-dev";
export const COMMIT: string = typeof __MAILINFRA_COMMIT__ === "string" ? __MAILINFRA_COMMIT__ : "";

export function versionLine(): string {
  return `mailinfra ${VERSION}${COMMIT ? ` (${COMMIT})` : ""} node ${process.version}`;
}

export async function runVersion(ctx: CommandContext): Promise<number> {
  ctx.io.out(versionLine());
  return 0;
}
