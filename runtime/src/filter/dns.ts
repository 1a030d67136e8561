/**
 * DNS for the checks: one node:dns Resolver pointed at `filter.dnsServers`
 * (the system's otherwise), one try per query and a hard timeout, so a dead
 * DNS server costs `dnsTimeoutMs` and yields an ETIMEOUT error — never a
 * verdict. mailauth takes the same function as its `resolver`.
 */
import { promises as dnsPromises } from "node:dns";

export type DnsAnswer = string[] | string[][];
/** The resolver shape mailauth accepts: dns.promises.resolve(name, rrtype). */
export type DnsResolve = (name: string, rrtype: string) => Promise<DnsAnswer>;

export interface DnsOptions {
  servers?: string[] | undefined;
  timeoutMs: number;
}

export class DnsError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "DnsError";
  }
}

/** Not-found answers: the name or the record type does not exist (RFC 2308). */
export function isNotFound(err: unknown): boolean {
  const code = (err as { code?: string } | null)?.code;
  return code === "ENOTFOUND" || code === "ENODATA";
}

export function createResolver(opts: DnsOptions): DnsResolve {
  const resolver = new dnsPromises.Resolver({ timeout: opts.timeoutMs, tries: 1 });
  if (opts.servers && opts.servers.length > 0) resolver.setServers(opts.servers);
  return (name, rrtype) => {
    let timer: NodeJS.Timeout | undefined;
    const guard = new Promise<never>((_, reject) => {
      // c-ares' own timeout is the normal path; this only bounds a stuck query.
      timer = setTimeout(
        () => reject(new DnsError("ETIMEOUT", `DNS ${rrtype} ${name}: no answer in ${opts.timeoutMs} ms`)),
        opts.timeoutMs + 250,
      );
    });
    const query = resolver.resolve(name, rrtype) as Promise<DnsAnswer>;
    return Promise.race([query, guard]).finally(() => clearTimeout(timer));
  };
}

/** Memoises answers (and failures) for one SMTP transaction: SPF at MAIL FROM and again in authenticate(). */
export function cachingResolver(base: DnsResolve): DnsResolve {
  const cache = new Map<string, Promise<DnsAnswer>>();
  return (name, rrtype) => {
    const key = `${rrtype}\0${name.toLowerCase()}`;
    let p = cache.get(key);
    if (!p) {
      p = base(name, rrtype);
      p.catch(() => {}); // observed by the caller; avoid an unhandled rejection for the cached copy
      cache.set(key, p);
    }
    return p;
  };
}
