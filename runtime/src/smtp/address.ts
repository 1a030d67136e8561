/**
 * Address checks for the relay decision. Only a plain `local@domain` may
 * reach a local mailbox: the old routing syntaxes that turned MTAs into open
 * relays are refused outright rather than interpreted — the percent hack
 * (`user%other@local`), bang paths (`other!user@local`), and quoted local
 * parts (`"user@other"@local`, RFC 5321 §4.1.2 Quoted-string). Source routes
 * (`<@a,@b:user@c>`) are already dropped by smtp-server as RFC 5321 §C says.
 */
import { MAX_ADDRESS_BYTES, MAX_LOCAL_PART_BYTES } from "./limits.js";

export interface ParsedAddress {
  local: string;
  /** Lower case, no trailing dot. */
  domain: string;
  /** local@domain with the domain normalised. */
  address: string;
}

export type AddressProblem = "syntax" | "routing" | "too-long";

export function parseAddress(raw: string): ParsedAddress | AddressProblem {
  if (Buffer.byteLength(raw) > MAX_ADDRESS_BYTES) return "too-long";
  const at = raw.lastIndexOf("@");
  if (at <= 0 || at === raw.length - 1) return "syntax";
  const local = raw.slice(0, at);
  const domain = raw
    .slice(at + 1)
    .toLowerCase()
    .replace(/\.$/, "");
  if (Buffer.byteLength(local) > MAX_LOCAL_PART_BYTES) return "too-long";
  if (/["%!@\\]/.test(local) || local.includes(":") || local.includes(",")) return "routing";
  // A domain name or an address literal; literals never name a local domain.
  if (
    !/^(\[[^\]]+\]|[\p{L}\p{N}](?:[\p{L}\p{N}-]*[\p{L}\p{N}])?(?:\.[\p{L}\p{N}](?:[\p{L}\p{N}-]*[\p{L}\p{N}])?)*)$/u.test(
      domain,
    )
  ) {
    return "syntax";
  }
  return { local, domain, address: `${local}@${domain}` };
}

export function domainOf(address: string): string {
  return address
    .slice(address.lastIndexOf("@") + 1)
    .toLowerCase()
    .replace(/\.$/, "");
}

export class LocalDomains {
  private readonly domains: Set<string>;
  constructor(domains: string[]) {
    this.domains = new Set(domains.map((d) => d.toLowerCase().replace(/\.$/, "")));
  }
  has(domain: string): boolean {
    return this.domains.has(domain.toLowerCase().replace(/\.$/, ""));
  }
  get first(): string {
    return this.domains.values().next().value ?? "localhost";
  }
}
