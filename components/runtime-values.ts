/**
 * What each host runs and with which settings, derived from the stack config:
 * the runtime services per role, the values of its runtime.yaml, its systemd
 * units' parameters, the LDAP URIs in the order its role prefers, and the TLS
 * names. Pure functions; MailInfrastructure renders and installs the results.
 */
import { SERVICES } from "../runtime/src/cli/services.js";
import type { HostConfig, Role, StackConfig } from "./config.js";
import {
  HEARTBEAT_SERVICES,
  RUNTIME_SERVICES,
  type RuntimeService,
  type RuntimeYamlParams,
  type SystemdUnitParams,
} from "./render/index.js";
import { TLS_CERT, TLS_KEY } from "./tls.js";

/** The runtime services each role runs (ldap runs slapd, no runtime service). */
export const ROLE_SERVICES: Record<Role, readonly RuntimeService[]> = {
  mx: ["smtp"],
  relay: ["smtp"],
  store: ["lmtp", "imap", "pop3", "managesieve"],
  ldap: [],
  webmail: ["webmail"],
  test: ["stats"],
};

/** Ports the services listen on (the well-known ones). */
export const PORTS = {
  smtp: 25,
  submission: 587,
  lmtp: 24,
  imap: 143,
  imaps: 993,
  pop3: 110,
  pop3s: 995,
  managesieve: 4190,
} as const;

/**
 * Each service's Prometheus `/metrics` and `/healthz` port (runtime.yaml
 * `metrics.services`): one runtime.yaml serves several services on a host (the
 * store's lmtp, imap, pop3), so each needs its own.
 */
export const METRICS_PORTS: Record<RuntimeService, number> = {
  smtp: 9125,
  lmtp: 9124,
  imap: 9143,
  pop3: 9110,
  managesieve: 9190,
  webmail: 9180,
  "imap-cache": 9144,
  stats: 9181,
};

/**
 * libuv's thread pool per service (fs and DNS calls run there; the default of 4
 * stalls fsync-heavy delivery): the store's services 64, SMTP 32, as the
 * runtime's benchmarks were run with.
 */
export const UV_THREADPOOL_SIZE: Partial<Record<RuntimeService, number>> = {
  lmtp: 64,
  imap: 64,
  pop3: 64,
  smtp: 32,
};

export const RUNTIME_CONFIG_PATH = "/etc/mailinfra/runtime.yaml";
export const LDAP_BIND_PASSWORD_FILE = "/etc/mailinfra/secrets/ldap-bind";
/** The CA the services check the LDAP servers' certificates against (ldap.tls.ca). */
export const LDAP_CA_FILE_RUNTIME = "/etc/mailinfra/ldap-ca.pem";
export const STATS_DATABASE_URL_FILE = "/etc/mailinfra/secrets/stats-database-url";
export const MAPS_DIR = "/etc/mailinfra/maps";
export const QUEUE_DIR = "/var/spool/mailinfra/queue";

/** Record names of the round-robin service names (as the DNS zone publishes them). */
export const SERVICE_NAMES = { relay: "mail", imap: "imap", pop: "pop", webmail: "webmail" } as const;

export function fqdnOf(cfg: StackConfig, host: HostConfig): string {
  return host.fqdn ?? `${host.name}.${cfg.zone}`;
}

/**
 * The services the runtime bundle of this checkout has: the keys of its own
 * `mailinfra serve` table (runtime/src/cli/services.ts), so the two cannot
 * drift. A role's service that is not there yet (webmail, stats, managesieve
 * arrive with later issues) is neither installed nor started nor handed to
 * Heartbeat; the `services` stack output lists it as not in this build.
 */
export const BUILT_SERVICES: ReadonlySet<RuntimeService> = new Set(Object.keys(SERVICES) as RuntimeService[]);

/** The services a host's roles call for, in a stable order, without duplicates (smtp for mx+relay once). */
export function roleServicesOf(cfg: StackConfig, host: HostConfig): RuntimeService[] {
  const wanted = new Set(host.roles.flatMap((r) => ROLE_SERVICES[r]));
  if (!cfg.statsEnabled) wanted.delete("stats");
  return RUNTIME_SERVICES.filter((s) => wanted.has(s));
}

/** The services a host runs: its roles' services that this runtime build has. */
export function servicesOf(cfg: StackConfig, host: HostConfig, built = BUILT_SERVICES): RuntimeService[] {
  return roleServicesOf(cfg, host).filter((s) => built.has(s));
}

/** Its roles' services this runtime build does not have yet. */
export function notInBuildOf(cfg: StackConfig, host: HostConfig, built = BUILT_SERVICES): RuntimeService[] {
  return roleServicesOf(cfg, host).filter((s) => !built.has(s));
}

/** Services Heartbeat runs on the active store node (not enabled at boot). */
export function heartbeatManaged(cfg: StackConfig, host: HostConfig, service: RuntimeService): boolean {
  return (
    cfg.ha.enabled &&
    host.roles.includes("store") &&
    (HEARTBEAT_SERVICES as readonly string[]).includes(service)
  );
}

/** The read-only LDAP account a host's services bind with. */
export function serviceAccountOf(host: HostConfig): string {
  const order: Role[] = ["store", "relay", "mx", "webmail", "test"];
  const role = order.find((r) => host.roles.includes(r));
  return role ?? "test";
}

/** Every service account the directory needs. */
export function serviceAccounts(cfg: StackConfig): string[] {
  return [
    ...new Set(cfg.hosts.filter((h) => roleServicesOf(cfg, h).length > 0).map(serviceAccountOf)),
  ].sort();
}

/**
 * LDAP URIs in the order the host's role prefers: roles in
 * ldap.replicaFirstRoles read a replica first (spreading the load), the others
 * the provider first. Every service gets all of them.
 */
export function ldapUrisFor(cfg: StackConfig, host: HostConfig, uris: Record<string, string>): string[] {
  const provider = uris[cfg.ldapProvider.name]!;
  const replicas = cfg.ldapReplicas.map((r) => uris[r.name]!);
  const replicaFirst =
    host.roles.some((r) => cfg.ldap.replicaFirstRoles.includes(r)) && !host.roles.includes("store");
  if (!replicaFirst || replicas.length === 0) return [provider, ...replicas];
  // Spread hosts of one role over the replicas: rotate by the host's index.
  const i = cfg.hosts.indexOf(host) % replicas.length;
  return [...replicas.slice(i), ...replicas.slice(0, i), provider];
}

/** DNS names and addresses a host's certificate covers. */
export function tlsNamesFor(cfg: StackConfig, host: HostConfig): { dns: string[]; ips: string[] } {
  const dns = [fqdnOf(cfg, host), host.name];
  const ips = [host.address];
  const z = cfg.zone;
  if (host.roles.includes("relay")) dns.push(`${SERVICE_NAMES.relay}.${z}`);
  if (host.roles.includes("store")) {
    dns.push(`${SERVICE_NAMES.imap}.${z}`, `${SERVICE_NAMES.pop}.${z}`);
    if (cfg.ha.enabled && cfg.ha.vip !== undefined) ips.push(cfg.ha.vip);
  }
  if (host.roles.includes("webmail")) dns.push(`${SERVICE_NAMES.webmail}.${z}`);
  return { dns: [...new Set(dns)], ips };
}

/**
 * The store pair's one certificate: the VIP's service names first (CN imap.<zone>),
 * then both nodes' names; the VIP and both addresses.
 */
export function storePairTlsNames(cfg: StackConfig): { dns: string[]; ips: string[] } {
  const z = cfg.zone;
  const dns = [`${SERVICE_NAMES.imap}.${z}`, `${SERVICE_NAMES.pop}.${z}`];
  const ips = cfg.ha.vip === undefined ? [] : [cfg.ha.vip];
  for (const s of cfg.stores) {
    dns.push(fqdnOf(cfg, s), s.name);
    ips.push(s.address);
  }
  return { dns: [...new Set(dns)], ips: [...new Set(ips)] };
}

/**
 * The LDAP hosts' one self-signed certificate: every LDAP host's names and
 * addresses (the services reach them by address: ldap://<address>/).
 */
export function ldapTlsNames(cfg: StackConfig): { dns: string[]; ips: string[] } {
  const hosts = [cfg.ldapProvider, ...cfg.ldapReplicas];
  return {
    dns: [...new Set(hosts.flatMap((h) => [fqdnOf(cfg, h), h.name]))],
    ips: [...new Set(hosts.map((h) => h.address))],
  };
}

/**
 * Whether the services get a CA file for LDAP: the self-signed LDAP certificate,
 * or tlsCaCertificate with a given pair. A given pair without it: the system's CAs.
 */
export function ldapCaInstalled(cfg: StackConfig): boolean {
  return cfg.ldap.tls && (cfg.secrets.tls === undefined || cfg.secrets.tlsCa !== undefined);
}

/** Networks the relays trust on port 25: smtp.trustedNetworks, else every host's address. */
export function trustedNetworks(cfg: StackConfig): string[] {
  return cfg.smtp.trustedNetworks ?? ["127.0.0.0/8", ...cfg.hosts.map((h) => `${h.address}/32`)];
}

/** Map files (Postfix regexp tables) the filter uses, by file name. */
export function filterMaps(cfg: StackConfig): Record<string, string> {
  const maps: Record<string, string> = {};
  const f = cfg.filtering;
  if (f.headerChecks) maps.header_checks = `${f.headerChecks.join("\n")}\n`;
  if (f.mimeHeaderChecks) maps.mime_header_checks = `${f.mimeHeaderChecks.join("\n")}\n`;
  if (f.bodyChecks) maps.body_checks = `${f.bodyChecks.join("\n")}\n`;
  return maps;
}

const any = (port: number) => `0.0.0.0:${port}`;

/** The runtime.yaml values for a host (the runtime's own schema input). */
export function runtimeYamlParams(
  cfg: StackConfig,
  host: HostConfig,
  ldapUris: Record<string, string>,
  bindDn: string,
  /** The services the runtime build has (a section only for a service that runs). */
  built: ReadonlySet<RuntimeService> = BUILT_SERVICES,
): RuntimeYamlParams {
  const services = servicesOf(cfg, host, built);
  const has = (s: RuntimeService) => services.includes(s);
  const isMx = host.roles.includes("mx");
  const isRelay = host.roles.includes("relay");
  const params: RuntimeYamlParams = {
    host: { name: host.name, roles: [...host.roles] },
    log: { level: cfg.runtime.logLevel },
    metrics: { services: Object.fromEntries(services.map((s) => [s, any(METRICS_PORTS[s])])) },
    tls: { certFile: TLS_CERT, keyFile: TLS_KEY },
    ldap: {
      uris: ldapUrisFor(cfg, host, ldapUris),
      baseDn: cfg.ldap.baseDn,
      bindDn,
      bindPasswordFile: LDAP_BIND_PASSWORD_FILE,
      // StartTLS to every LDAP server, its certificate checked (RFC 4513 §3).
      ...(cfg.ldap.tls
        ? { tls: ldapCaInstalled(cfg) ? { ca: LDAP_CA_FILE_RUNTIME, startTls: true } : { startTls: true } }
        : {}),
    },
  };
  if (has("lmtp") || has("imap") || has("pop3") || has("managesieve"))
    params.store = { root: cfg.san.mountpoint };
  if (has("lmtp")) params.lmtp = { listen: [any(PORTS.lmtp)] };
  if (has("imap")) params.imap = { listen: [any(PORTS.imap)], tlsListen: [any(PORTS.imaps)] };
  if (has("pop3")) params.pop3 = { listen: [any(PORTS.pop3)], tlsListen: [any(PORTS.pop3s)] };
  if (has("smtp")) {
    const smtp: NonNullable<RuntimeYamlParams["smtp"]> = {
      domains: [...cfg.domains],
      reverseLookup: cfg.smtp.reverseLookup,
    };
    if (isMx) smtp.mx = { listen: [any(PORTS.smtp)] };
    if (isRelay)
      smtp.relay = {
        submissionListen: [any(PORTS.submission)],
        // With the MX role on the same host, its port 25 serves the trusted networks too.
        listen: isMx ? [] : [any(PORTS.smtp)],
        trustedNetworks: trustedNetworks(cfg),
      };
    params.smtp = smtp;
    const queue: NonNullable<RuntimeYamlParams["queue"]> = {
      dir: QUEUE_DIR,
      lmtp: { host: cfg.storeAddress, port: PORTS.lmtp },
    };
    if (cfg.filtering.dnsServers) queue.dnsServers = [...cfg.filtering.dnsServers];
    params.queue = queue;
  }
  if (isMx && has("smtp")) {
    const f = cfg.filtering;
    const maps = filterMaps(cfg);
    const filter: NonNullable<RuntimeYamlParams["filter"]> = {
      dnsbl: f.dnsbl.map((d) => ({ zone: d.zone, weight: d.weight })),
      dnsblRejectScore: f.dnsblRejectScore,
      spamTagScore: f.spamTagScore,
      spamRejectScore: f.spamRejectScore,
      onScannerFailure: f.onScannerFailure,
    };
    if (maps.header_checks) filter.headerChecks = `regexp:${MAPS_DIR}/header_checks`;
    if (maps.mime_header_checks) filter.mimeHeaderChecks = `regexp:${MAPS_DIR}/mime_header_checks`;
    if (maps.body_checks) filter.bodyChecks = `regexp:${MAPS_DIR}/body_checks`;
    if (f.spamd)
      filter.spamd = f.spamd.port === undefined ? { host: f.spamd.host } : { ...f.spamd, port: f.spamd.port };
    if (f.clamd)
      filter.clamd = f.clamd.port === undefined ? { host: f.clamd.host } : { ...f.clamd, port: f.clamd.port };
    if (f.dnsServers) filter.dnsServers = [...f.dnsServers];
    params.filter = filter;
  }
  if (has("webmail"))
    params.webmail = { listen: [any(cfg.webmail.port)], imapHost: cfg.storeAddress, imapPort: PORTS.imap };
  if (has("stats"))
    params.stats = { listen: [any(cfg.stats.port)], databaseUrlFile: STATS_DATABASE_URL_FILE };
  return params;
}

/** The systemd unit parameters of one service on a host. */
export function unitParams(cfg: StackConfig, host: HostConfig, service: RuntimeService): SystemdUnitParams {
  const managed = heartbeatManaged(cfg, host, service);
  const writes: string[] = [`/var/lib/${cfg.runtime.user}`];
  if (service === "smtp") writes.push(QUEUE_DIR);
  if (["lmtp", "imap", "pop3", "managesieve"].includes(service)) writes.push(cfg.san.mountpoint);
  const p: SystemdUnitParams = {
    service,
    nodePath: cfg.runtime.nodePath,
    prefix: cfg.runtime.prefix,
    configPath: RUNTIME_CONFIG_PATH,
    user: cfg.runtime.user,
    readWritePaths: writes,
    enableAtBoot: !managed,
  };
  const threads = UV_THREADPOOL_SIZE[service];
  if (threads !== undefined) p.environment = { UV_THREADPOOL_SIZE: String(threads) };
  if (managed || (host.roles.includes("store") && writes.includes(cfg.san.mountpoint)))
    p.requireMountPoint = cfg.san.mountpoint;
  return p;
}
