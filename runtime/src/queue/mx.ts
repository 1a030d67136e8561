/**
 * Where SMTP for a domain goes (RFC 5321 §5.1): MX records by preference,
 * each exchange's A then AAAA addresses; no MX → the domain's own address
 * ("implicit MX"); a null MX (RFC 7505: a single "." exchange) → the domain
 * accepts no mail, a permanent failure.
 */
import { Resolver } from "node:dns/promises";

export interface MxHost {
  /** Exchange name (TLS SNI, DSN Remote-MTA). */
  name: string;
  address: string;
}

export class MxLookupError extends Error {
  constructor(
    readonly permanent: boolean,
    message: string,
  ) {
    super(message);
    this.name = "MxLookupError";
  }
}

const NO_SUCH_NAME = new Set(["ENOTFOUND", "ENODATA", "ENONAME"]);

export function createResolver(servers: string[] | undefined, timeoutMs = 5000): Resolver {
  const resolver = new Resolver({ timeout: timeoutMs, tries: 2 });
  if (servers && servers.length > 0) resolver.setServers(servers);
  return resolver;
}

async function addressesOf(resolver: Resolver, name: string): Promise<string[]> {
  const out: string[] = [];
  let lastError: unknown;
  for (const lookup of [() => resolver.resolve4(name), () => resolver.resolve6(name)]) {
    try {
      out.push(...(await lookup()));
    } catch (err) {
      lastError = err;
    }
  }
  if (out.length === 0 && lastError && !NO_SUCH_NAME.has((lastError as NodeJS.ErrnoException).code ?? "")) {
    throw lastError;
  }
  return out;
}

export async function resolveMxHosts(resolver: Resolver, domain: string): Promise<MxHost[]> {
  let records: Array<{ exchange: string; priority: number }>;
  try {
    records = await resolver.resolveMx(domain);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? "";
    if (code === "ENOTFOUND") throw new MxLookupError(true, `5.1.2 domain ${domain} does not exist`);
    if (code !== "ENODATA") throw new MxLookupError(false, `4.4.3 MX lookup for ${domain} failed: ${code}`);
    records = [];
  }
  if (records.length === 1 && (records[0]?.exchange === "" || records[0]?.exchange === ".")) {
    throw new MxLookupError(true, `5.1.10 ${domain} accepts no mail (null MX, RFC 7505)`);
  }
  // Equal preferences in random order (RFC 5321 §5.1) spread load across them.
  const sorted = records
    .map((r) => ({ ...r, tie: Math.random() }))
    .sort((a, b) => a.priority - b.priority || a.tie - b.tie)
    .map((r) => r.exchange);
  const names = sorted.length > 0 ? sorted : [domain];
  const hosts: MxHost[] = [];
  let transient = false;
  for (const name of names) {
    try {
      for (const address of await addressesOf(resolver, name)) hosts.push({ name, address });
    } catch {
      transient = true;
    }
  }
  if (hosts.length === 0) {
    if (transient) throw new MxLookupError(false, `4.4.3 address lookup for the MX of ${domain} failed`);
    throw new MxLookupError(
      records.length === 0,
      `${records.length === 0 ? "5" : "4"}.4.4 no address for ${domain}'s mail exchangers`,
    );
  }
  return hosts;
}
