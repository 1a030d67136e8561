/**
 * Local recipients, checked against the directory at RCPT time: `mail` and
 * `mailLocalAddress` match an account; `mailRoutingAddress` forwards (one hop:
 * a local target is looked up again for its store); `mailHost` picks the
 * store (shard) that gets the LMTP copy. The directory being unreachable is a
 * 4xx, never "unknown user".
 */
import type { Directory } from "../directory/types.js";
import { DirectoryUnavailableError } from "../directory/types.js";
import type { Route, Router } from "../queue/types.js";
import { domainOf, type LocalDomains } from "./address.js";
import { reply } from "./replies.js";

export interface ResolvedRecipient {
  /** Where the copy goes (after forwarding). */
  address: string;
  route: Exclude<Route, { kind: "resolve" }>;
}

/** Throws SmtpReplyError (550 5.1.1, 451 4.4.3) when the address cannot take mail now. */
export async function resolveLocalRecipient(
  directory: Directory,
  domains: LocalDomains,
  address: string,
): Promise<ResolvedRecipient> {
  const account = await lookup(directory, address);
  if (!account) throw reply(550, "5.1.1", `<${address}>: Recipient address rejected: User unknown`);
  if (account.routingAddress && account.routingAddress.toLowerCase() !== address.toLowerCase()) {
    const target = account.routingAddress;
    if (!domains.has(domainOf(target))) return { address: target, route: { kind: "smtp" } };
    const targetAccount = await lookup(directory, target);
    if (!targetAccount) throw reply(550, "5.1.1", `<${address}>: Recipient address rejected: User unknown`);
    return { address: target, route: lmtpRoute(targetAccount.mailHost) };
  }
  return { address, route: lmtpRoute(account.mailHost) };
}

function lmtpRoute(mailHost: string | undefined): ResolvedRecipient["route"] {
  return mailHost ? { kind: "lmtp", host: mailHost } : { kind: "lmtp" };
}

async function lookup(directory: Directory, address: string) {
  try {
    return await directory.findByAddress(address);
  } catch (err) {
    if (err instanceof DirectoryUnavailableError) {
      throw reply(451, "4.4.3", "Directory temporarily unavailable, try again later");
    }
    throw reply(451, "4.3.0", "Temporary lookup failure, try again later");
  }
}

/** The queue's router for DSNs: local domains through the directory, the rest by SMTP. */
export function createRouter(directory: Directory, domains: LocalDomains): Router {
  return {
    async resolve(address) {
      if (!domains.has(domainOf(address))) return { address, route: { kind: "smtp" } };
      try {
        return await resolveLocalRecipient(directory, domains, address);
      } catch (err) {
        if ((err as { responseCode?: number }).responseCode === 550) return null;
        throw new DirectoryUnavailableError("recipient lookup failed", { cause: err });
      }
    },
  };
}
