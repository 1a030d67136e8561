/**
 * QUOTA (RFC 9208, formerly RFC 2087): one root "" per account with the
 * STORAGE resource in units of 1024 octets; SETQUOTA is refused (the
 * directory sets quotas).
 */
import { no } from "../errors.js";
import type { Session } from "../session.js";
import { compile } from "../wire/compiler.js";
import { AUTHENTICATED, command, mailboxCommand } from "./types.js";

async function sendQuota(s: Session): Promise<void> {
  const q = await s.user!.quota();
  s.writeLine(`* QUOTA "" (STORAGE ${Math.ceil(q.usedBytes / 1024)} ${Math.floor(q.limitBytes / 1024)})`);
}

export const getquota = command({
  states: AUTHENTICATED,
  parse(args) {
    const root = args.astring("quota root");
    args.end();
    return root;
  },
  async handler(s, root) {
    if (root !== "") throw no("No such quota root", "NONEXISTENT");
    await sendQuota(s);
    return undefined;
  },
});

export const getquotaroot = mailboxCommand(async (s, mailbox) => {
  await s.user!.status(mailbox); // NONEXISTENT for unknown mailboxes
  s.writeLine(
    `* QUOTAROOT ${compile([mailbox === "INBOX" ? { atom: "INBOX" } : mailbox]).toString("latin1")} ""`,
  );
  await sendQuota(s);
});

export const setquota = command({
  states: AUTHENTICATED,
  parse(args) {
    args.astring("quota root");
    args.list("resource limits");
    args.end();
  },
  async handler() {
    throw no("Quotas are set in the directory", "NOPERM");
  },
});
