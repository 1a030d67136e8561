/**
 * The DNS records to publish, as a zone-file fragment (RFC 1035 §5): MX records
 * of equal preference for every mail domain (round robin over the MX hosts), and
 * A records: one per MX host, and round-robin names for the relays
 * (mail.<zone>), the store VIP (imap., pop.) and webmail.
 */
import { isHostName, isIPv4, RenderError, renderTemplate } from "./template.js";

export interface DnsHost {
  /** Name relative to the zone ("mx1") or absolute with a trailing dot. */
  name: string;
  address: string;
}

export interface DnsZoneParams {
  /** The zone the names live in, e.g. "example.org". */
  zone: string;
  /** Domains that receive mail; each gets one MX per MX host. Defaults to [zone]. */
  mailDomains?: readonly string[];
  /** The MX hosts, all with the same preference. */
  mx: readonly DnsHost[];
  /** MX preference. Defaults to 10. */
  mxPreference?: number;
  /** Relay addresses behind the round-robin name `names.relay`. */
  relays: readonly string[];
  /** The store's virtual IP, behind `names.imap` and `names.pop`. */
  storeVip: string;
  /** Webmail addresses behind `names.webmail`. */
  webmail: readonly string[];
  /** Record names. Defaults: relay "mail", imap "imap", pop "pop", webmail "webmail". */
  names?: { relay?: string; imap?: string; pop?: string; webmail?: string };
  /** TTL in seconds. Defaults to 3600. */
  ttl?: number;
}

const R = "dns";

function fqdn(zone: string, name: string): string {
  return name.endsWith(".") ? name : `${name}.${zone}.`;
}

/** Renders the zone fragment (a `$TTL` line, then MX and A records, absolute names). */
export function renderDnsZone(params: DnsZoneParams): string {
  const zone = params.zone.replace(/\.$/, "");
  if (!isHostName(zone) || !zone.includes("."))
    throw new RenderError(R, "zone", `not a domain name: ${params.zone}`);
  const ttl = params.ttl ?? 3600;
  if (!Number.isInteger(ttl) || ttl < 0 || ttl > 2147483647)
    throw new RenderError(R, "ttl", `out of range: ${ttl}`);
  const pref = params.mxPreference ?? 10;
  if (!Number.isInteger(pref) || pref < 0 || pref > 65535)
    throw new RenderError(R, "mxPreference", `expected 0-65535, got ${pref}`);
  const checkName = (field: string, name: string): void => {
    if (!isHostName(name.replace(/\.$/, ""))) throw new RenderError(R, field, `not a host name: ${name}`);
  };
  const checkAddress = (field: string, address: string): void => {
    if (!isIPv4(address)) throw new RenderError(R, field, `expected an IPv4 address, got ${address}`);
  };
  if (params.mx.length === 0) throw new RenderError(R, "mx", "at least one MX host is needed");
  const mailDomains = (params.mailDomains ?? [zone]).map((d, i) => {
    checkName(`mailDomains[${i}]`, d);
    return `${d.replace(/\.$/, "")}.`;
  });
  const names = {
    relay: params.names?.relay ?? "mail",
    imap: params.names?.imap ?? "imap",
    pop: params.names?.pop ?? "pop",
    webmail: params.names?.webmail ?? "webmail",
  };
  for (const [k, v] of Object.entries(names)) checkName(`names.${k}`, v);
  const a: { name: string; address: string }[] = [];
  params.mx.forEach((h, i) => {
    checkName(`mx[${i}].name`, h.name);
    checkAddress(`mx[${i}].address`, h.address);
    a.push({ name: fqdn(zone, h.name), address: h.address });
  });
  const group = (field: string, name: string, addresses: readonly string[]): void => {
    addresses.forEach((address, i) => {
      checkAddress(`${field}[${i}]`, address);
      a.push({ name: fqdn(zone, name), address });
    });
  };
  group("relays", names.relay, params.relays);
  checkAddress("storeVip", params.storeVip);
  group("storeVip", names.imap, [params.storeVip]);
  group("storeVip", names.pop, [params.storeVip]);
  group("webmail", names.webmail, params.webmail);
  const seen = new Set<string>();
  for (const r of a) {
    const key = `${r.name.toLowerCase()} ${r.address}`;
    if (seen.has(key)) throw new RenderError(R, "records", `duplicate A record ${r.name} ${r.address}`);
    seen.add(key);
  }
  const mx = mailDomains.flatMap((domain) =>
    params.mx.map((h) => ({ domain, pref, host: fqdn(zone, h.name) })),
  );
  const width = Math.max(...[...mx.map((r) => r.domain), ...a.map((r) => r.name)].map((n) => n.length));
  return renderTemplate("dns/zone.hbs", {
    zone,
    ttl,
    mx: mx.map((r) => ({ ...r, domain: r.domain.padEnd(width) })),
    a: a.map((r) => ({ ...r, name: r.name.padEnd(width) })),
  });
}
