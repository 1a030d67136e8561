/**
 * HELO/EHLO name checks (Postfix reject_invalid_helo_hostname,
 * reject_non_fqdn_helo_hostname, and the "you are not me" rule):
 * - syntax: RFC 5321 §4.1.1.1, a domain or an address literal in brackets
 *   (§4.1.3); a bare IP address is not a valid argument;
 * - claims to be us: our host name, one of our mail domains, or one of our
 *   addresses as a literal;
 * - not fully qualified: a single label.
 * With `helo.reject` false a finding adds `helo.score` instead.
 */
import { isIP } from "node:net";
import { isTrusted, result, type Session, type Shared } from "./context.js";
import type { CheckResult } from "./types.js";

export const CHECK = "helo";

const LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/i;

export type HeloFinding = "missing" | "bare-ip" | "invalid" | "claims-us" | "non-fqdn";

/** Pure classification of a HELO argument; undefined when it is fine. */
export function classifyHelo(
  helo: string,
  us: { hostname: string; domains: Set<string>; addresses: Set<string> },
  client?: string,
): HeloFinding | undefined {
  const name = helo.trim().toLowerCase().replace(/\.$/, "");
  if (name === "") return "missing";
  if (isIP(name)) return "bare-ip";
  const literal = /^\[(?:ipv6:)?([0-9a-f:.]+)\]$/i.exec(name);
  if (literal) {
    const addr = literal[1]!;
    if (!isIP(addr)) return "invalid";
    // A literal of the client's own address is the truth, even on a shared host.
    const own = client?.replace(/^::ffff:/i, "").toLowerCase();
    return us.addresses.has(addr) && addr !== own ? "claims-us" : undefined;
  }
  if (name.length > 255 || !name.split(".").every((l) => LABEL.test(l))) return "invalid";
  if (name === us.hostname.toLowerCase() || us.domains.has(name)) return "claims-us";
  if (!name.includes(".")) return "non-fqdn";
  return undefined;
}

const REPLIES: Record<HeloFinding, { code: number; enhanced: string; text: string }> = {
  missing: { code: 501, enhanced: "5.5.2", text: "Helo command rejected: a host name is required" },
  "bare-ip": {
    code: 501,
    enhanced: "5.5.2",
    text: "Helo command rejected: an address must be written as a literal, e.g. [192.0.2.1]",
  },
  invalid: { code: 501, enhanced: "5.5.2", text: "Helo command rejected: Invalid name" },
  "claims-us": { code: 550, enhanced: "5.7.1", text: "Helo command rejected: you are not me" },
  "non-fqdn": { code: 504, enhanced: "5.5.2", text: "Helo command rejected: need fully-qualified hostname" },
};

export function helo(shared: Shared, session: Session, name: string): CheckResult {
  const cfg = shared.config.helo;
  if (!cfg.enabled) return result(CHECK, "helo", "skip", { detail: "disabled" });
  if (isTrusted(session) || session.conn?.submission) {
    return result(CHECK, "helo", "skip", { detail: "trusted client" });
  }
  const finding = classifyHelo(
    name,
    {
      hostname: shared.hostname,
      domains: shared.localDomains,
      addresses: shared.localAddresses,
    },
    session.conn?.remoteAddress,
  );
  if (finding === undefined) return result(CHECK, "helo", "pass");
  const r = REPLIES[finding];
  if (!cfg.reject) return result(CHECK, "helo", "fail", { detail: finding, score: cfg.score });
  return result(CHECK, "helo", "fail", {
    detail: finding,
    score: cfg.score,
    action: "reject",
    code: r.code,
    enhanced: r.enhanced,
    reply: `<${name.slice(0, 100)}>: ${r.text}`,
  });
}
