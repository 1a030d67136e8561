/**
 * The stack configuration: ONE zod schema for every `mailinfra:<key>` of
 * `stacks/Pulumi.<stack>.yaml`, the role rules across keys, and the secrets.
 *
 * Parsed once at the edge (`loadStackConfig`), before any resource is
 * registered; a bad config throws a `StackConfigError` whose message names the
 * key path and what was expected (`mailinfra:hosts[3].address: expected an
 * IPv4 address`). Nothing else in the program reads raw config.
 *
 * Secrets are top-level keys of their own (`pulumi config set --secret KEY`),
 * never nested in an object: the objects stay readable in the stack file and in
 * `pulumi config`, and a secret is always an `Output` marked secret.
 */
import * as pulumi from "@pulumi/pulumi";
import { z } from "zod";

export const PROJECT = "mailinfra";

/** The roles a host can have (DESIGN.md's topology). */
export const ROLES = ["mx", "relay", "store", "ldap", "webmail", "test"] as const;
export type Role = (typeof ROLES)[number];

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const DOMAIN = /^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$/;
const DN =
  /^[A-Za-z][A-Za-z0-9-]*=[^,=+"\\<>;\s][^,=+"\\<>;]*(,[A-Za-z][A-Za-z0-9-]*=[^,=+"\\<>;\s][^,=+"\\<>;]*)*$/;
const ABS_PATH = /^\/[A-Za-z0-9_./@+-]*$/;
const IFACE = /^[A-Za-z0-9_.:-]{1,15}$/;

const ipv4 = () => z.string().regex(IPV4, "expected an IPv4 address");
const port = () => z.number().int().min(1, "expected a port 1-65535").max(65535, "expected a port 1-65535");
const absPath = () => z.string().regex(ABS_PATH, "expected an absolute path of plain characters");
const seconds = () => z.number().int().positive("expected a positive whole number of seconds");

/** A host: where it is, how to reach it over SSH, what it does. */
const HostSchema = z.object({
  /** Short name, as `uname -n` prints it (Heartbeat node names must match). */
  name: z.string().regex(LABEL, "expected a lower-case host name label (a-z, 0-9, -)"),
  address: ipv4(),
  roles: z
    .array(z.enum(ROLES, { error: `expected one of ${ROLES.join(", ")}` }))
    .min(1, "expected at least one role")
    .refine((r) => new Set(r).size === r.length, "a role is listed twice"),
  /** Fully qualified name; defaults to `<name>.<dns.zone>`. */
  fqdn: z.string().regex(DOMAIN, "expected a fully qualified domain name").optional(),
  ssh: z
    .object({
      user: z
        .string()
        .regex(/^[a-z_][a-z0-9_-]{0,31}$/, "expected a user name")
        .default("root"),
      port: port().default(22),
      /** Name of the secret config key holding this host's private key. */
      privateKeySecret: z
        .string()
        .regex(/^[A-Za-z][A-Za-z0-9]*$/, "expected a config key name")
        .default("sshPrivateKey"),
      /** The host's public key (OpenSSH format); without it the host key is not checked. */
      hostKey: z.string().min(1).optional(),
    })
    .prefault({}),
});
export type HostConfig = z.infer<typeof HostSchema>;

const LdapSchema = z.object({
  /** e.g. "dc=example,dc=org"; the first RDN is dc= or o=. */
  baseDn: z.string().regex(DN, "expected a DN such as dc=example,dc=org"),
  /** The `o` of the base entry. */
  organization: z.string().min(1).default("Mail"),
  /** The provider's rootdn; defaults to cn=admin,<baseDn>. */
  adminDn: z.string().regex(DN, "expected a DN").optional(),
  /** The host that is the provider (an `ldap` host); defaults to the first `ldap` host. */
  provider: z.string().optional(),
  /** Roles that read a replica first, to spread the load; the others read the provider first. */
  replicaFirstRoles: z.array(z.enum(ROLES)).default(["mx", "webmail"]),
  port: port().default(389),
  /**
   * TLS between every service and slapd, and between the replicas and the
   * provider: StartTLS on `port`, simple binds refused without it, the servers'
   * certificate (self-signed for the LDAP hosts, or tlsCertificate) verified.
   */
  tls: z.boolean().default(true),
});

const SanSchema = z.object({
  /** Block device of the SAN LUN on the store hosts. */
  device: z.string().regex(/^\/dev\/[A-Za-z0-9/_.-]+$/, "expected a /dev path"),
  mountpoint: absPath()
    .refine((p) => p !== "/", "the mountpoint cannot be /")
    .default("/srv/mail"),
  /** XFS label (at most 12 characters): the volume is formatted only when blank, and must carry this label. */
  label: z
    .string()
    .regex(/^[A-Za-z0-9_-]{1,12}$/, "expected 1-12 letters, digits, _ or - (an XFS label)")
    .default("mailstore"),
  /** Extra mkfs.xfs arguments (never -f: a device that holds anything is never formatted). */
  mkfsOptions: z
    .string()
    .regex(/^[A-Za-z0-9=,._ -]*$/, "expected mkfs.xfs arguments of plain characters")
    .refine((s) => !/(^|\s)-f(\s|$)/.test(s) && !/(^|\s)-[A-Za-z]*f/.test(s), "-f is never allowed")
    .default(""),
  mountOptions: z
    .string()
    .regex(/^[A-Za-z0-9_=.-]+(,[A-Za-z0-9_=.-]+)*$/, "expected comma-separated mount options")
    .default("noatime"),
});

const HaSchema = z.object({
  /** Heartbeat for the store pair. Off: one store host, the SAN mounted plainly (staging). */
  enabled: z.boolean().default(true),
  /** The store's virtual IPv4 address (required when enabled). */
  vip: ipv4().optional(),
  prefix: z.number().int().min(1, "expected 1-32").max(32, "expected 1-32").default(24),
  /** Interface that carries the VIP (and the default ucast links). */
  interface: z.string().regex(IFACE, "expected an interface name").default("eth0"),
  /** Heartbeat ucast links; defaults to both store hosts' addresses on `interface`. */
  ucast: z
    .array(z.object({ interface: z.string().regex(IFACE, "expected an interface name"), peer: ipv4() }))
    .optional(),
  serial: z
    .object({
      device: z.string().regex(/^\/dev\/[A-Za-z0-9/_.-]+$/, "expected a /dev path"),
      baud: z
        .union([z.literal(9600), z.literal(19200), z.literal(38400), z.literal(57600), z.literal(115200)])
        .optional(),
    })
    .optional(),
  keepalive: seconds().default(1),
  warntime: seconds().default(3),
  deadtime: seconds().default(5),
  initdead: seconds().default(10),
  autoFailback: z.enum(["on", "off", "legacy"]).default("off"),
  /** The store host that takes the resources when both start; defaults to the first store host. */
  preferredNode: z.string().optional(),
});

const Endpoint = z.object({ host: z.string().min(1), port: port().optional() });

const FilteringSchema = z.object({
  dnsbl: z
    .array(z.object({ zone: z.string().regex(DOMAIN, "expected a DNS zone"), weight: z.number().default(1) }))
    .default([]),
  dnsblRejectScore: z.number().default(1),
  /** Postfix-style regexp map lines (header_checks), written to /etc/mailinfra/maps/. */
  headerChecks: z.array(z.string()).optional(),
  mimeHeaderChecks: z.array(z.string()).optional(),
  bodyChecks: z.array(z.string()).optional(),
  spamTagScore: z.number().default(5),
  spamRejectScore: z.number().default(12),
  spamd: Endpoint.optional(),
  clamd: Endpoint.optional(),
  /** When spamd or clamd cannot be reached: accept ("open") or tempfail ("closed"). */
  onScannerFailure: z.enum(["open", "closed"]).default("closed"),
  /** DNS servers the filters ask instead of the system's ("ip" or "ip:port"). */
  dnsServers: z.array(z.string().regex(/^[0-9.]+(:\d+)?$/, "expected ip or ip:port")).optional(),
});

const SmtpSchema = z.object({
  /** Networks the relays accept mail from on port 25 without AUTH; defaults to the hosts' addresses. */
  trustedNetworks: z
    .array(z.string().regex(/^[0-9.]+\/\d{1,2}$/, "expected a CIDR such as 198.51.100.0/24"))
    .optional(),
  /** Look up clients' PTR names (off where there is no DNS, e.g. the lab). */
  reverseLookup: z.boolean().default(true),
});

const WebmailSchema = z.object({ port: port().default(80) });

const StatsSchema = z.object({
  /** The statistics service on `test` hosts. */
  enabled: z.boolean().default(true),
  port: port().default(8080),
  database: z
    .object({
      /** A local host (127.0.0.1/localhost) gets its PostgreSQL role and database created by the deploy. */
      host: z.string().min(1).default("127.0.0.1"),
      port: port().default(5432),
      name: z
        .string()
        .regex(/^[a-z_][a-z0-9_]{0,62}$/, "expected a PostgreSQL identifier")
        .default("mailstats"),
      user: z
        .string()
        .regex(/^[a-z_][a-z0-9_]{0,62}$/, "expected a PostgreSQL identifier")
        .default("mailstats"),
    })
    .prefault({}),
});

const RuntimeSchema = z.object({
  nodePath: absPath().default("/usr/bin/node"),
  /** Install prefix of the bundle (`<prefix>/mailinfra.mjs`). */
  prefix: absPath().default("/opt/mailinfra"),
  logLevel: z.enum(["fatal", "error", "warn", "info", "debug", "trace"]).default("info"),
  /** The services' Unix user; same uid/gid on every host (the store pair shares the SAN). */
  user: z
    .string()
    .regex(/^[a-z_][a-z0-9_-]{0,31}$/, "expected a user name")
    .default("mailinfra"),
  uid: z.number().int().min(100).max(60000).default(2525),
});

const DnsSchema = z.object({
  /** The zone of the host names and service names; defaults to the first mail domain. */
  zone: z.string().regex(DOMAIN, "expected a domain name").optional(),
  ttl: z.number().int().nonnegative().default(3600),
});

const TlsSchema = z.object({
  /**
   * Without the tlsCertificate/tlsPrivateKey secrets, generate a self-signed
   * certificate on each host. Defaults to true on every stack except prod.
   */
  selfSigned: z.boolean().optional(),
});

/** Every non-secret key of the stack config. */
export const StackConfigSchema = z.object({
  hosts: z.array(HostSchema).min(1, "expected at least one host"),
  /** The mail domains this system receives for. */
  domains: z
    .array(z.string().regex(DOMAIN, "expected a domain name"))
    .min(1, "expected at least one mail domain"),
  dns: DnsSchema.prefault({}),
  ldap: LdapSchema,
  san: SanSchema,
  ha: HaSchema.prefault({}),
  filtering: FilteringSchema.prefault({}),
  smtp: SmtpSchema.prefault({}),
  webmail: WebmailSchema.prefault({}),
  stats: StatsSchema.prefault({}),
  runtime: RuntimeSchema.prefault({}),
  tls: TlsSchema.prefault({}),
});
export type StackSettings = z.infer<typeof StackConfigSchema>;
export const CONFIG_KEYS = Object.keys(StackConfigSchema.shape) as (keyof StackSettings)[];

/** Secret keys: set with `pulumi config set --secret <key>`. */
export const SECRET_KEYS = {
  sshPrivateKey:
    "SSH private key (OpenSSH PEM) the deployer logs in with; hosts may name another key in ssh.privateKeySecret",
  ldapAdminPassword: "password of the LDAP rootdn (ldap.adminDn); only its {SSHA} hash reaches the provider",
  ldapReplicationPassword: "password of the replication DN the replicas bind with",
  ldapServicePassword: "master secret: each service account's bind password is derived from it (HMAC-SHA256)",
  heartbeatAuthkey: "Heartbeat authkeys secret (16+ printable characters); required when ha.enabled",
  statsDatabasePassword:
    "PostgreSQL password of the statistics database user; required with a `test` host and stats.enabled",
  tlsCertificate: "optional: PEM certificate chain for the services (with tlsPrivateKey)",
  tlsPrivateKey: "optional: PEM private key of tlsCertificate",
  tlsCaCertificate:
    "optional: PEM CA certificate(s) that issued tlsCertificate; services and replicas verify LDAP against it (absent: the system's CAs)",
} as const;
export type SecretKey = keyof typeof SECRET_KEYS;

export interface StackSecrets {
  /** Private key per host name. */
  sshPrivateKeys: Record<string, pulumi.Output<string>>;
  ldapAdminPassword: pulumi.Output<string>;
  ldapReplicationPassword: pulumi.Output<string>;
  ldapServicePassword: pulumi.Output<string>;
  heartbeatAuthkey?: pulumi.Output<string>;
  statsDatabasePassword?: pulumi.Output<string>;
  tls?: { certificate: pulumi.Output<string>; privateKey: pulumi.Output<string> };
  /** The CA of a given tlsCertificate (LDAP clients verify against it). */
  tlsCa?: pulumi.Output<string>;
}

/** The validated config with everything derived that the components need. */
export interface StackConfig extends StackSettings {
  stack: string;
  /** The DNS zone (dns.zone or the first mail domain). */
  zone: string;
  /** The LDAP provider host and the replicas. */
  ldapProvider: HostConfig;
  ldapReplicas: HostConfig[];
  adminDn: string;
  stores: HostConfig[];
  /** Where MX/relays deliver (LMTP) and users read (IMAP/POP3): the VIP, or the single store's address. */
  storeAddress: string;
  preferredStore: HostConfig;
  selfSignedTls: boolean;
  statsEnabled: boolean;
  secrets: StackSecrets;
}

export class StackConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid stack configuration:\n  ${problems.join("\n  ")}`);
    this.name = "StackConfigError";
  }
}

/** `hosts[3].address` from a zod path, prefixed with the project namespace. */
export function keyPath(path: readonly PropertyKey[]): string {
  let out = PROJECT;
  path.forEach((p, i) => {
    if (typeof p === "number") out += `[${p}]`;
    else out += i === 0 ? `:${String(p)}` : `.${String(p)}`;
  });
  return out;
}

function zodMessage(issue: z.core.$ZodIssue): string {
  if (issue.code === "invalid_type") {
    const input = (issue as { input?: unknown }).input;
    return input === undefined ? `required (expected ${issue.expected})` : `expected ${issue.expected}`;
  }
  if (issue.code === "unrecognized_keys") return `unknown key(s) ${issue.keys.join(", ")}`;
  return issue.message;
}

/** IPv4 dotted quad → 32-bit unsigned. */
export function ipToInt(ip: string): number {
  return ip.split(".").reduce((acc, o) => acc * 256 + Number(o), 0);
}

export function sameSubnet(a: string, b: string, prefix: number): boolean {
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  return (ipToInt(a) & mask) >>> 0 === (ipToInt(b) & mask) >>> 0;
}

const hasRole = (h: HostConfig, r: Role) => h.roles.includes(r);

/**
 * The role rules across keys. Returns problems as `key path: message`.
 * `presentSecrets` are the secret keys the stack defines.
 */
export function checkRules(cfg: StackSettings, stack: string, presentSecrets: ReadonlySet<string>): string[] {
  const problems: string[] = [];
  const at = (path: PropertyKey[], msg: string) => problems.push(`${keyPath(path)}: ${msg}`);
  const names = new Map<string, number>();
  const addresses = new Map<string, number>();
  cfg.hosts.forEach((h, i) => {
    const n = names.get(h.name);
    if (n !== undefined) at(["hosts", i, "name"], `${h.name} is already the name of hosts[${n}]`);
    else names.set(h.name, i);
    const a = addresses.get(h.address);
    if (a !== undefined) at(["hosts", i, "address"], `${h.address} is already the address of hosts[${a}]`);
    else addresses.set(h.address, i);
  });

  const withRole = (r: Role) => cfg.hosts.filter((h) => hasRole(h, r));
  if (withRole("mx").length === 0) at(["hosts"], "expected at least one host with role mx");
  const ldapHosts = withRole("ldap");
  if (ldapHosts.length === 0) at(["hosts"], "expected at least one host with role ldap (the LDAP provider)");
  if (cfg.ldap.provider !== undefined) {
    const p = cfg.hosts.find((h) => h.name === cfg.ldap.provider);
    if (!p) at(["ldap", "provider"], `no host is named ${cfg.ldap.provider}`);
    else if (!hasRole(p, "ldap")) at(["ldap", "provider"], `${p.name} does not have the ldap role`);
  }
  if (
    cfg.ldap.adminDn !== undefined &&
    !cfg.ldap.adminDn.toLowerCase().endsWith(`,${cfg.ldap.baseDn.toLowerCase()}`)
  )
    at(["ldap", "adminDn"], `expected a DN under ${cfg.ldap.baseDn}`);
  if (!/^(dc|o)=/i.test(cfg.ldap.baseDn)) at(["ldap", "baseDn"], "expected the first RDN to be dc= or o=");

  const stores = withRole("store");
  if (cfg.ha.enabled) {
    if (stores.length !== 2)
      at(
        ["hosts"],
        `expected exactly two hosts with role store when ha.enabled is true, found ${stores.length}`,
      );
    if (cfg.ha.vip === undefined)
      at(["ha", "vip"], "required when ha.enabled is true (expected an IPv4 address)");
    else {
      if (addresses.has(cfg.ha.vip))
        at(["ha", "vip"], `${cfg.ha.vip} is already the address of hosts[${addresses.get(cfg.ha.vip)}]`);
      for (const s of stores)
        if (!sameSubnet(cfg.ha.vip, s.address, cfg.ha.prefix))
          at(
            ["ha", "vip"],
            `${cfg.ha.vip}/${cfg.ha.prefix} is not in the subnet of ${s.name} (${s.address})`,
          );
    }
    if (cfg.ha.preferredNode !== undefined && !stores.some((s) => s.name === cfg.ha.preferredNode))
      at(["ha", "preferredNode"], `${cfg.ha.preferredNode} is not a store host`);
    if (cfg.ha.warntime <= cfg.ha.keepalive) at(["ha", "warntime"], "must be longer than keepalive");
    if (cfg.ha.deadtime <= cfg.ha.warntime) at(["ha", "deadtime"], "must be longer than warntime");
    if (cfg.ha.initdead < 2 * cfg.ha.deadtime) at(["ha", "initdead"], "must be at least twice deadtime");
    if (!presentSecrets.has("heartbeatAuthkey"))
      at(
        ["heartbeatAuthkey"],
        "required secret when ha.enabled is true (pulumi config set --secret heartbeatAuthkey)",
      );
  } else if (stores.length !== 1) {
    at(
      ["hosts"],
      `expected exactly one host with role store when ha.enabled is false, found ${stores.length}`,
    );
  }

  if (stack === "prod") {
    for (const r of ROLES)
      if (withRole(r).length === 0) at(["hosts"], `stack prod needs every role: no host has role ${r}`);
  }
  for (const k of ["ldapAdminPassword", "ldapReplicationPassword", "ldapServicePassword"] as const)
    if (!presentSecrets.has(k)) at([k], `required secret (pulumi config set --secret ${k})`);
  cfg.hosts.forEach((h, i) => {
    if (!presentSecrets.has(h.ssh.privateKeySecret))
      at(
        ["hosts", i, "ssh", "privateKeySecret"],
        `secret ${h.ssh.privateKeySecret} is not set (pulumi config set --secret ${h.ssh.privateKeySecret} < key)`,
      );
  });
  if (cfg.stats.enabled && withRole("test").length > 0 && !presentSecrets.has("statsDatabasePassword"))
    at(["statsDatabasePassword"], "required secret with a test host and stats.enabled");
  const cert = presentSecrets.has("tlsCertificate");
  const key = presentSecrets.has("tlsPrivateKey");
  if (cert !== key)
    at([cert ? "tlsPrivateKey" : "tlsCertificate"], "tlsCertificate and tlsPrivateKey go together");
  if (presentSecrets.has("tlsCaCertificate") && !cert)
    at(["tlsCaCertificate"], "only with tlsCertificate (self-signed LDAP certificates are their own CA)");
  const selfSigned = cfg.tls.selfSigned ?? stack !== "prod";
  if (!cert && !selfSigned)
    at(
      ["tlsCertificate"],
      `required secret on stack ${stack} (self-signed certificates are generated only when tls.selfSigned is true)`,
    );
  return problems;
}

/**
 * Validates raw config values (what `requireObject`/`get` return) and the set of
 * secret keys present. Throws StackConfigError listing every problem.
 */
export function parseStackSettings(
  raw: Record<string, unknown>,
  stack: string,
  presentSecrets: ReadonlySet<string>,
): StackSettings {
  const result = StackConfigSchema.safeParse(raw, { reportInput: true });
  if (!result.success) {
    throw new StackConfigError(result.error.issues.map((i) => `${keyPath(i.path)}: ${zodMessage(i)}`));
  }
  const problems = checkRules(result.data, stack, presentSecrets);
  if (problems.length > 0) throw new StackConfigError(problems);
  return result.data;
}

/** Everything derived from valid settings (no secrets). */
export function deriveConfig(s: StackSettings, stack: string, secrets: StackSecrets): StackConfig {
  const ldapHosts = s.hosts.filter((h) => hasRole(h, "ldap"));
  const ldapProvider = ldapHosts.find((h) => h.name === s.ldap.provider) ?? ldapHosts[0]!;
  const stores = s.hosts.filter((h) => hasRole(h, "store"));
  const preferredStore = stores.find((h) => h.name === s.ha.preferredNode) ?? stores[0]!;
  return {
    ...s,
    stack,
    zone: s.dns.zone ?? s.domains[0]!,
    ldapProvider,
    ldapReplicas: ldapHosts.filter((h) => h !== ldapProvider),
    adminDn: s.ldap.adminDn ?? `cn=admin,${s.ldap.baseDn}`,
    stores,
    storeAddress: s.ha.enabled ? s.ha.vip! : preferredStore.address,
    preferredStore,
    selfSignedTls: secrets.tls === undefined,
    statsEnabled: s.stats.enabled && s.hosts.some((h) => hasRole(h, "test")),
    secrets,
  };
}

/**
 * Checks on secret values. They run when the value resolves (a secret cannot be
 * read before), so a bad one fails the steps that use it, naming the key.
 */
export const SECRET_CHECKS: Record<string, (v: string) => string | undefined> = {
  sshPrivateKey: (v) =>
    /-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(v) ? undefined : "expected a PEM/OpenSSH private key",
  ldapAdminPassword: (v) => (v.length >= 8 ? undefined : "expected at least 8 characters"),
  ldapReplicationPassword: (v) =>
    /^[\x21-\x7e]{8,}$/.test(v) && !/["\\]/.test(v)
      ? undefined
      : "expected 8 or more printable characters without spaces, quotes or backslashes (it goes in slapd.conf)",
  ldapServicePassword: (v) => (v.length >= 16 ? undefined : "expected at least 16 characters"),
  heartbeatAuthkey: (v) =>
    /^[\x21-\x7e]{16,}$/.test(v) ? undefined : "expected 16 or more printable characters without spaces",
  statsDatabasePassword: (v) => (v.length >= 8 ? undefined : "expected at least 8 characters"),
  tlsCertificate: (v) =>
    v.includes("-----BEGIN CERTIFICATE-----") ? undefined : "expected a PEM certificate",
  tlsPrivateKey: (v) =>
    /-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(v) ? undefined : "expected a PEM private key",
  tlsCaCertificate: (v) =>
    v.includes("-----BEGIN CERTIFICATE-----") ? undefined : "expected a PEM certificate",
};

function checkedSecret(
  key: string,
  value: pulumi.Output<string>,
  check = SECRET_CHECKS[key],
): pulumi.Output<string> {
  if (check === undefined) return value;
  return value.apply((v) => {
    const problem = check(v);
    if (problem !== undefined) throw new StackConfigError([`${PROJECT}:${key}: ${problem}`]);
    return v;
  });
}

/** Reads the raw values of every non-secret key; a value that is not JSON names its key. */
function readRaw(cfg: pulumi.Config): Record<string, unknown> {
  const raw: Record<string, unknown> = {};
  for (const k of CONFIG_KEYS) {
    let v: unknown;
    try {
      v = cfg.getObject<unknown>(k);
    } catch {
      throw new StackConfigError([`${PROJECT}:${k}: expected a YAML/JSON object or list`]);
    }
    if (v !== undefined) raw[k] = v;
  }
  return raw;
}

/**
 * The stack config of the running program (`new pulumi.Config("mailinfra")`),
 * validated. Throws StackConfigError before any resource is registered.
 */
export function loadStackConfig(
  cfg: pulumi.Config = new pulumi.Config(PROJECT),
  stack = pulumi.getStack(),
): StackConfig {
  const raw = readRaw(cfg);
  const hostKeys = new Set<string>(["sshPrivateKey"]);
  const hosts = (raw.hosts as { ssh?: { privateKeySecret?: unknown } }[] | undefined) ?? [];
  if (Array.isArray(hosts))
    for (const h of hosts)
      if (typeof h?.ssh?.privateKeySecret === "string") hostKeys.add(h.ssh.privateKeySecret);
  const secretOutputs = new Map<string, pulumi.Output<string>>();
  for (const k of new Set<string>([...Object.keys(SECRET_KEYS), ...hostKeys])) {
    const v = cfg.getSecret(k);
    if (v !== undefined)
      secretOutputs.set(
        k,
        checkedSecret(k, v, hostKeys.has(k) ? SECRET_CHECKS.sshPrivateKey : SECRET_CHECKS[k]),
      );
  }
  const settings = parseStackSettings(raw, stack, new Set(secretOutputs.keys()));
  const need = (k: string) => secretOutputs.get(k)!;
  const secrets: StackSecrets = {
    sshPrivateKeys: Object.fromEntries(settings.hosts.map((h) => [h.name, need(h.ssh.privateKeySecret)])),
    ldapAdminPassword: need("ldapAdminPassword"),
    ldapReplicationPassword: need("ldapReplicationPassword"),
    ldapServicePassword: need("ldapServicePassword"),
  };
  const optional = (k: string) => secretOutputs.get(k);
  const hb = optional("heartbeatAuthkey");
  if (hb) secrets.heartbeatAuthkey = hb;
  const stats = optional("statsDatabasePassword");
  if (stats) secrets.statsDatabasePassword = stats;
  const cert = optional("tlsCertificate");
  const key = optional("tlsPrivateKey");
  if (cert && key) secrets.tls = { certificate: cert, privateKey: key };
  const ca = optional("tlsCaCertificate");
  if (ca && secrets.tls) secrets.tlsCa = ca;
  return deriveConfig(settings, stack, secrets);
}

/** Secret keys a stack must define (for tools that supply them, e.g. the lab's applier). */
export function requiredSecretKeys(settings: StackSettings): string[] {
  const keys = new Set<string>(["ldapAdminPassword", "ldapReplicationPassword", "ldapServicePassword"]);
  for (const h of settings.hosts) keys.add(h.ssh.privateKeySecret);
  if (settings.ha.enabled) keys.add("heartbeatAuthkey");
  if (settings.stats.enabled && settings.hosts.some((h) => hasRole(h, "test")))
    keys.add("statsDatabasePassword");
  return [...keys];
}
