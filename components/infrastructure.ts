/**
 * `MailInfrastructure`: the whole system from a validated stack config.
 *
 * Order (each an explicit dependsOn):
 *   Host (SSH, packages, user, bundle) on every host, first;
 *   SAN: the preferred store formats (guarded) before the other checks; format before mount;
 *   LDAP: provider, then its base entries, then the replicas;
 *   LDAP before every runtime; TLS before the runtime of its host;
 *   store: runtime units and SAN entry on both nodes → Heartbeat configured on
 *     both → Heartbeat started on each;
 *   store before MX, relays, webmail and statistics.
 */
import * as pulumi from "@pulumi/pulumi";
import type { HostConfig, Role, StackConfig } from "./config.js";
import { HeartbeatPair } from "./heartbeat.js";
import { Host } from "./host.js";
import { LdapDirectory, servicePassword } from "./ldap.js";
import { type Connection, connectionFor } from "./remote.js";
import {
  type HeartbeatService,
  renderAuthkeys,
  renderDnsZone,
  renderHaCf,
  renderHaresources,
  renderResourceScript,
  renderRuntimeYaml,
  renderSystemdUnit,
  serviceDn,
} from "./render/index.js";
import { MailRuntime, type RuntimeFile } from "./runtime.js";
import {
  filterMaps,
  fqdnOf,
  heartbeatManaged,
  LDAP_BIND_PASSWORD_FILE,
  LDAP_CA_FILE_RUNTIME,
  ldapTlsNames,
  MAPS_DIR,
  notInBuildOf,
  PORTS,
  roleServicesOf,
  runtimeYamlParams,
  SERVICE_NAMES,
  STATS_DATABASE_URL_FILE,
  serviceAccountOf,
  serviceAccounts,
  servicesOf,
  storePairTlsNames,
  tlsNamesFor,
  unitParams,
} from "./runtime-values.js";
import { SanVolume } from "./san.js";
import { StatsDatabase, statsDatabaseUrl } from "./stats.js";
import { SharedTls, Tls } from "./tls.js";

function hostsWith(cfg: StackConfig, role: Role): HostConfig[] {
  return cfg.hosts.filter((h) => h.roles.includes(role));
}

export interface MailInfrastructureArgs {
  config: StackConfig;
  /** The runtime bundle (runtime/dist/mailinfra.mjs). */
  bundlePath: string;
}

export interface Endpoints {
  mx: string[];
  submission: string[];
  imap: string;
  imaps: string;
  pop3: string;
  pop3s: string;
  managesieve: string;
  lmtp: string;
  webmail: string[];
  ldap: string[];
  stats: string[];
}

/** The endpoints ops and users reach (pure: tests and outputs share it). */
export function endpointsOf(cfg: StackConfig, ldapUris: readonly string[]): Endpoints {
  const s = cfg.storeAddress;
  return {
    mx: hostsWith(cfg, "mx").map((h) => `${h.address}:${PORTS.smtp}`),
    submission: hostsWith(cfg, "relay").map((h) => `${h.address}:${PORTS.submission}`),
    imap: `${s}:${PORTS.imap}`,
    imaps: `${s}:${PORTS.imaps}`,
    pop3: `${s}:${PORTS.pop3}`,
    pop3s: `${s}:${PORTS.pop3s}`,
    managesieve: `${s}:${PORTS.managesieve}`,
    lmtp: `${s}:${PORTS.lmtp}`,
    webmail: hostsWith(cfg, "webmail").map(
      (h) => `http://${h.address}${cfg.webmail.port === 80 ? "" : `:${cfg.webmail.port}`}/`,
    ),
    ldap: [...ldapUris],
    stats: cfg.statsEnabled
      ? hostsWith(cfg, "test").map((h) => `http://${h.address}:${cfg.stats.port}/`)
      : [],
  };
}

/** The DNS records to publish (zone fragment). */
export function dnsZoneOf(cfg: StackConfig): string {
  const rel = (h: HostConfig) => {
    const f = fqdnOf(cfg, h);
    return f.endsWith(`.${cfg.zone}`) ? f.slice(0, -cfg.zone.length - 1) : `${f}.`;
  };
  return renderDnsZone({
    zone: cfg.zone,
    mailDomains: cfg.domains,
    mx: hostsWith(cfg, "mx").map((h) => ({ name: rel(h), address: h.address })),
    relays: hostsWith(cfg, "relay").map((h) => h.address),
    storeVip: cfg.storeAddress,
    webmail: hostsWith(cfg, "webmail").map((h) => h.address),
    names: SERVICE_NAMES,
    ttl: cfg.dns.ttl,
  });
}

/** Per host: the runtime services it runs, and its roles' services this runtime build does not have yet. */
export type HostServices = Record<string, { runs: string[]; notInThisBuild: string[] }>;

export function hostServicesOf(cfg: StackConfig): HostServices {
  const out: HostServices = {};
  for (const h of cfg.hosts) out[h.name] = { runs: servicesOf(cfg, h), notInThisBuild: notInBuildOf(cfg, h) };
  return out;
}

export class MailInfrastructure extends pulumi.ComponentResource {
  readonly endpoints: Endpoints;
  readonly services: HostServices;
  readonly dnsZone: string;
  readonly hosts: Record<string, Host> = {};

  constructor(name: string, args: MailInfrastructureArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mailinfra:infrastructure:MailInfrastructure", name, {}, opts);
    const cfg = args.config;
    const o = { parent: this };
    const conn: Record<string, Connection> = {};
    for (const h of cfg.hosts) conn[h.name] = connectionFor(h, cfg.secrets.sshPrivateKeys[h.name]!);

    // Hosts.
    for (const h of cfg.hosts) {
      const runsServices = servicesOf(cfg, h).length > 0;
      this.hosts[h.name] = new Host(
        h.name,
        {
          connection: conn[h.name]!,
          roles: h.roles,
          user: { name: cfg.runtime.user, uid: cfg.runtime.uid },
          prefix: cfg.runtime.prefix,
          nodePath: cfg.runtime.nodePath,
          ...(runsServices ? { bundlePath: args.bundlePath } : {}),
        },
        o,
      );
    }
    const host = (h: HostConfig) => this.hosts[h.name]!;

    // SAN: the preferred store formats a blank device; the other only checks, after it.
    const san: Record<string, SanVolume> = {};
    const storesInOrder = [cfg.preferredStore, ...cfg.stores.filter((s) => s !== cfg.preferredStore)];
    let previous: pulumi.Resource | undefined;
    for (const s of storesInOrder) {
      san[s.name] = new SanVolume(
        `${s.name}-san`,
        {
          connection: conn[s.name]!,
          device: cfg.san.device,
          label: cfg.san.label,
          mkfsOptions: cfg.san.mkfsOptions,
          mountpoint: cfg.san.mountpoint,
          mountOptions: cfg.san.mountOptions,
          mayFormat: s === cfg.preferredStore,
          heartbeatOwnsMount: cfg.ha.enabled,
          owner: { user: cfg.runtime.user, uid: cfg.runtime.uid },
          dependsOn: [...host(s).ready, ...(previous ? [previous] : [])],
        },
        o,
      );
      previous = san[s.name]!.format;
    }

    // LDAP: provider, base entries, replicas.
    const accounts = serviceAccounts(cfg);
    const ldapNode = (h: HostConfig) => ({
      name: h.name,
      address: h.address,
      connection: conn[h.name]!,
      dependsOn: host(h).ready,
    });
    const ldap = new LdapDirectory(
      "ldap",
      {
        provider: ldapNode(cfg.ldapProvider),
        replicas: cfg.ldapReplicas.map(ldapNode),
        suffix: cfg.ldap.baseDn,
        organization: cfg.ldap.organization,
        rootDn: cfg.adminDn,
        port: cfg.ldap.port,
        adminPassword: cfg.secrets.ldapAdminPassword,
        replicationPassword: cfg.secrets.ldapReplicationPassword,
        servicePassword: cfg.secrets.ldapServicePassword,
        serviceAccounts: accounts,
        saltSeed: `${cfg.stack}:${cfg.ldap.baseDn}`,
        ...(cfg.ldap.tls
          ? {
              tls: {
                dnsNames: ldapTlsNames(cfg).dns,
                ipAddresses: ldapTlsNames(cfg).ips,
                ...(cfg.secrets.tls ? { given: cfg.secrets.tls } : {}),
                ...(cfg.secrets.tlsCa ? { givenCa: cfg.secrets.tlsCa } : {}),
              },
            }
          : {}),
      },
      o,
    );

    // The statistics database (PostgreSQL on the test host) belongs to the role,
    // whether or not this runtime build has the stats service yet.
    const statsDbs: Record<string, StatsDatabase> = {};
    const db = cfg.stats.database;
    const statsPw = cfg.secrets.statsDatabasePassword;
    if (statsPw && ["127.0.0.1", "localhost", "::1"].includes(db.host))
      for (const h of cfg.hosts.filter((x) => roleServicesOf(cfg, x).includes("stats")))
        statsDbs[h.name] = new StatsDatabase(
          `${h.name}-statsdb`,
          {
            connection: conn[h.name]!,
            name: db.name,
            user: db.user,
            port: db.port,
            password: statsPw,
            dependsOn: host(h).ready,
          },
          o,
        );

    // The store pair behind the VIP serves ONE self-signed certificate (when none
    // is given): generated on the preferred node, the same pair on the other, so
    // clients see the same certificate after a failover.
    let sharedTls: SharedTls | undefined;
    if (cfg.ha.enabled && !cfg.secrets.tls && cfg.stores.length === 2) {
      const names = storePairTlsNames(cfg);
      sharedTls = new SharedTls(
        "store-tls",
        {
          nodes: storesInOrder.map((s) => ({
            name: s.name,
            connection: conn[s.name]!,
            dependsOn: host(s).ready,
          })),
          owner: cfg.runtime.user,
          dnsNames: names.dns,
          ipAddresses: names.ips,
        },
        o,
      );
    }

    // Runtime per host with services: TLS, files, units.
    const runtimes: Record<string, MailRuntime> = {};
    const makeRuntime = (h: HostConfig, after: pulumi.Input<pulumi.Resource>[]) => {
      const services = servicesOf(cfg, h);
      const names = tlsNamesFor(cfg, h);
      const shared = sharedTls?.fingerprints[h.name];
      const tls = shared
        ? { resource: sharedTls as pulumi.Resource, fingerprint: shared }
        : (() => {
            const t = new Tls(
              `${h.name}-tls`,
              {
                connection: conn[h.name]!,
                owner: cfg.runtime.user,
                dnsNames: names.dns,
                ipAddresses: names.ips,
                ...(cfg.secrets.tls ? { given: cfg.secrets.tls } : {}),
                dependsOn: host(h).ready,
              },
              o,
            );
            return { resource: t as pulumi.Resource, fingerprint: t.fingerprint };
          })();
      const account = serviceAccountOf(h);
      const bindDn = serviceDn(cfg.ldap.baseDn, account);
      const yaml = renderRuntimeYaml(runtimeYamlParams(cfg, h, ldap.uris, bindDn));
      const files: RuntimeFile[] = [
        {
          stageName: "ldap-bind",
          path: LDAP_BIND_PASSWORD_FILE,
          mode: "0600",
          secret: true,
          content: pulumi.output(cfg.secrets.ldapServicePassword).apply((m) => servicePassword(m, account)),
        },
      ];
      if (ldap.caCertificate !== undefined)
        files.push({
          stageName: "ldap-ca.pem",
          path: LDAP_CA_FILE_RUNTIME,
          mode: "0644",
          secret: false,
          content: ldap.caCertificate,
        });
      if (services.includes("smtp") && h.roles.includes("mx"))
        for (const [file, text] of Object.entries(filterMaps(cfg)))
          files.push({
            stageName: `map-${file}`,
            path: `${MAPS_DIR}/${file}`,
            mode: "0640",
            secret: false,
            content: text,
          });
      const deps: pulumi.Input<pulumi.Resource>[] = [...host(h).ready, tls.resource, ...ldap.ready, ...after];
      if (services.includes("stats") && cfg.secrets.statsDatabasePassword) {
        const db = cfg.stats.database;
        const pw = cfg.secrets.statsDatabasePassword;
        files.push({
          stageName: "stats-database-url",
          path: STATS_DATABASE_URL_FILE,
          mode: "0600",
          secret: true,
          content: pulumi.output(pw).apply((p) => statsDatabaseUrl(db.host, db.port, db.name, db.user, p)),
        });
      }
      const statsDb = statsDbs[h.name];
      if (statsDb) deps.push(statsDb);
      const units = services.map((service) => ({
        service,
        text: renderSystemdUnit(unitParams(cfg, h, service)),
        heartbeatManaged: heartbeatManaged(cfg, h, service),
      }));
      const rt = new MailRuntime(
        `${h.name}-runtime`,
        {
          connection: conn[h.name]!,
          runtimeYaml: yaml,
          files,
          units,
          user: cfg.runtime.user,
          prefix: cfg.runtime.prefix,
          nodePath: cfg.runtime.nodePath,
          bundleHash: host(h).bundleHash ?? "",
          tlsFingerprint: tls.fingerprint,
          dependsOn: deps,
        },
        o,
      );
      runtimes[h.name] = rt;
      return rt;
    };

    // Store: runtime (after the SAN mount entry) on every store node, then Heartbeat.
    const storeReady: pulumi.Resource[] = [];
    for (const s of cfg.stores) storeReady.push(makeRuntime(s, [san[s.name]!.mount]).install);
    if (cfg.ha.enabled) {
      const [a, b] = storesInOrder as [HostConfig, HostConfig];
      const nodes = [a.name, b.name];
      const storeServices = servicesOf(cfg, a).filter((x) =>
        heartbeatManaged(cfg, a, x),
      ) as HeartbeatService[];
      const ucast = cfg.ha.ucast ?? cfg.stores.map((x) => ({ interface: cfg.ha.interface, peer: x.address }));
      const haCf = renderHaCf({
        nodes,
        ucast,
        ...(cfg.ha.serial
          ? {
              serial: cfg.ha.serial.baud
                ? { device: cfg.ha.serial.device, baud: cfg.ha.serial.baud }
                : { device: cfg.ha.serial.device },
            }
          : {}),
        keepaliveSeconds: cfg.ha.keepalive,
        warntimeSeconds: cfg.ha.warntime,
        deadtimeSeconds: cfg.ha.deadtime,
        initdeadSeconds: cfg.ha.initdead,
        autoFailback: cfg.ha.autoFailback,
      });
      const haresources = renderHaresources({
        nodes,
        preferredNode: cfg.preferredStore.name,
        vip: cfg.ha.vip!,
        prefix: cfg.ha.prefix,
        interface: cfg.ha.interface,
        device: cfg.san.device,
        mountpoint: cfg.san.mountpoint,
        mountOptions: cfg.san.mountOptions,
        services: storeServices,
      });
      const haNode = (n: HostConfig) => ({
        name: n.name,
        connection: conn[n.name]!,
        dependsOn: [san[n.name]!.mount, runtimes[n.name]!.install],
      });
      const hb = new HeartbeatPair(
        "store-ha",
        {
          nodes: [haNode(a), haNode(b)],
          haCf,
          haresources,
          resourceScript: renderResourceScript({ services: storeServices }),
          authkeys: pulumi
            .output(cfg.secrets.heartbeatAuthkey!)
            .apply((secret) => renderAuthkeys({ secret })),
        },
        o,
      );
      storeReady.splice(0, storeReady.length, ...hb.started);
    }

    // Everything else after the store.
    for (const h of cfg.hosts) {
      if (runtimes[h.name] || servicesOf(cfg, h).length === 0) continue;
      makeRuntime(h, storeReady);
    }

    const allUris = [cfg.ldapProvider, ...cfg.ldapReplicas].map((h) => ldap.uris[h.name]!);
    this.endpoints = endpointsOf(cfg, allUris);
    this.dnsZone = dnsZoneOf(cfg);
    this.services = hostServicesOf(cfg);
    const missing = [...new Set(Object.values(this.services).flatMap((x) => x.notInThisBuild))];
    if (missing.length > 0)
      pulumi.log.info(`not in this runtime build (not installed, not started): ${missing.join(", ")}`, this);
    this.registerOutputs({ endpoints: this.endpoints, dnsZone: this.dnsZone, services: this.services });
  }
}
