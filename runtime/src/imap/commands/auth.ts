/**
 * Shared by LOGIN and AUTHENTICATE: directory check, failure delay, the
 * session's move to the authenticated state (RFC 3501 §6.2.2, §6.2.3).
 * Passwords never reach a log.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { DirectoryUnavailableError } from "../../directory/types.js";
import { ImapError, no } from "../errors.js";
import type { Session } from "../session.js";
import type { CommandResult } from "./types.js";

export async function authenticate(s: Session, login: string, password: string): Promise<CommandResult> {
  if (s.loginDisabled()) throw no("Log in after STARTTLS", "PRIVACYREQUIRED");
  let account: Awaited<ReturnType<typeof s.server.authenticate>>;
  try {
    account = login && password ? await s.server.authenticate(login, password, s) : null;
  } catch (err) {
    if (err instanceof DirectoryUnavailableError) {
      s.log.warn({ err: err.message }, "directory unavailable");
      throw no("Authentication service unavailable, try again later", "UNAVAILABLE");
    }
    throw err;
  }
  if (!account) {
    const failures = await s.server.authFailures(s.remoteAddress, true);
    s.log.info({ login: login.slice(0, 64), failures }, "authentication failed");
    // slow down guessing from one address once it has failed a few times
    if (failures >= s.server.limits.authFailuresBeforeDelay) await sleep(s.server.limits.authFailureDelayMs);
    throw no("Authentication failed", "AUTHENTICATIONFAILED");
  }
  try {
    await s.login(account);
  } catch (err) {
    if (err instanceof ImapError) throw err;
    s.log.error({ err }, "cannot open the mail store");
    throw no("Mailbox store unavailable, try again later", "UNAVAILABLE");
  }
  s.log.info("logged in");
  return { code: `CAPABILITY ${s.capabilities().join(" ")}`, text: "Logged in" };
}
