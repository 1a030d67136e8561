/**
 * What every check sees: the pipeline-wide part (config, deps, loaded maps,
 * DNS) and the connection's session. Checks read these and return a
 * CheckResult; none of them decides the verdict (verdict.ts does).
 */
import { networkInterfaces } from "node:os";
import type { Logger } from "pino";
import type { RuntimeConfig } from "../config/schema.js";
import type { DnsResolve } from "./dns.js";
import type { CheckResult, CheckStage, ConnectionInfo } from "./types.js";

export type FilterConfig = RuntimeConfig["filter"];

export interface FilterDeps {
  logger: Logger;
  /** The mail domains we receive for (HELO "claims to be us"). */
  localDomains: string[];
  /** This host's name: HELO checks and the Authentication-Results authserv-id. Defaults to os.hostname(). */
  hostname?: string;
  /** This host's IP addresses (HELO checks). Defaults to the addresses of its interfaces. */
  localAddresses?: string[];
}

export interface Shared {
  config: FilterConfig;
  logger: Logger;
  hostname: string;
  localDomains: Set<string>;
  localAddresses: Set<string>;
  dns: DnsResolve;
}

/** One SMTP connection's state, as the stage methods learn it. */
export interface Session {
  conn?: ConnectionInfo;
  helo?: string;
  sender?: string;
  recipients: string[];
  authenticatedUser?: string;
  /** Per mail transaction: memoised DNS (SPF at MAIL FROM is asked again by authenticate()). */
  dns: DnsResolve;
}

/** Trusted networks and authenticated users skip the checks aimed at strangers (Postfix permit_mynetworks). */
export function isTrusted(s: Session): boolean {
  return s.conn?.trustedNetwork === true || s.authenticatedUser !== undefined;
}

export function hostAddresses(): string[] {
  const out: string[] = [];
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) out.push(a.address.toLowerCase());
  }
  return out;
}

export function result(
  check: string,
  stage: CheckStage,
  outcome: CheckResult["outcome"],
  extra: Omit<CheckResult, "check" | "stage" | "outcome"> = {},
): CheckResult {
  return { check, stage, outcome, ...extra };
}

/** Removes control characters and bounds the length of text that may reach an SMTP reply or a log. */
export function clean(text: string, max = 200): string {
  const t = text.replace(/[\x00-\x1f\x7f]+/g, " ").trim();
  return t.length > max ? `${t.slice(0, max)}…` : t;
}
