/**
 * OpenLDAP (Debian 12's slapd 2.5) in slapd.conf style: the provider (mdb +
 * syncprov) and its syncrepl replicas, the base entries, and /etc/default/slapd.
 *
 * Debian configures slapd through cn=config (/etc/ldap/slapd.d) by default. The
 * component switches it to the rendered slapd.conf by writing the defaults file
 * from `renderSlapdDefaults` (SLAPD_CONF=/etc/ldap/slapd.conf): the init script
 * then starts `slapd -f <SLAPD_CONF>`. slapd.conf and the base LDIF hold
 * credentials or hashes: write them mode 0600/0640, owner openldap.
 */
import { createHash, randomBytes } from "node:crypto";
import { assertNever, RenderError, renderTemplate } from "./template.js";

const R = "ldap";

/** Where Debian's slapd package puts things. */
export const DEBIAN_SLAPD = {
  confPath: "/etc/ldap/slapd.conf",
  schemaDir: "/etc/ldap/schema",
  modulePath: "/usr/lib/ldap",
  /** Not /var/lib/ldap itself: that holds the package's own cn=config database. Create it 0700 openldap. */
  directory: "/var/lib/ldap/mailinfra",
  pidFile: "/var/run/slapd/slapd.pid",
  argsFile: "/var/run/slapd/slapd.args",
} as const;

/** DN of a service account: `cn=<name>,ou=services,<suffix>`. */
export function serviceDn(suffix: string, name: string): string {
  return `cn=${name},ou=services,${suffix}`;
}

/** DN of a user: `uid=<uid>,ou=people,<suffix>`. */
export function userDn(suffix: string, uid: string): string {
  return `uid=${uid},ou=people,${suffix}`;
}

/**
 * RFC 2307 style `{SSHA}` hash: base64(SHA-1(password ‖ salt) ‖ salt). A random
 * 8-byte salt unless one is given.
 */
export function sshaHash(password: string, salt?: Uint8Array): string {
  const s = salt ?? randomBytes(8);
  const digest = createHash("sha1").update(password, "utf8").update(s).digest();
  return `{SSHA}${Buffer.concat([digest, s]).toString("base64")}`;
}

/**
 * A per-DN salt derived from a seed, so re-renders with the same seed give the
 * same hashes (stable snapshots, no needless re-apply).
 */
export function derivedSalt(seed: string, dn: string): Buffer {
  return createHash("sha256").update(`${seed}\0${dn.toLowerCase()}`, "utf8").digest().subarray(0, 8);
}

export interface SlapdTls {
  certFile: string;
  keyFile: string;
  /** CA bundle; also used by a replica to check the provider. */
  caFile?: string;
}

interface SlapdCommon {
  /** Base DN, e.g. "dc=example,dc=org". */
  suffix: string;
  /** rootdn of the database (needed on replicas too: syncrepl writes as it). */
  rootDn: string;
  /** `{SSHA}` hash for rootpw (see `sshaHash`). Omit to allow no root binds (replicas). */
  rootPasswordHash?: string;
  /** Read-only service DNs (see `serviceDn`). */
  serviceDns: readonly string[];
  /** The DN replicas bind with; reads everything, including password hashes. */
  replicationDn: string;
  /** Defaults to /etc/ldap/schema (core, cosine, inetorgperson, nis, misc are read from it). */
  schemaDir?: string;
  /** Absolute path of templates/ldap/mailinfra.schema on the host. Defaults to <schemaDir>/mailinfra.schema. */
  mailinfraSchemaPath?: string;
  /** Defaults to /usr/lib/ldap. */
  modulePath?: string;
  /**
   * mdb directory. Defaults to /var/lib/ldap/mailinfra (inside the AppArmor profile's
   * /var/lib/ldap/, apart from the database Debian's package created). The component
   * creates it (owner openldap, mode 0700) before starting slapd.
   */
  directory?: string;
  /** Defaults to /var/run/slapd/slapd.pid. */
  pidFile?: string;
  /** Defaults to /var/run/slapd/slapd.args. */
  argsFile?: string;
  /** mdb maxsize in bytes. Defaults to 1 GiB. */
  maxSizeBytes?: number;
  /** slapd loglevel. Defaults to "stats". */
  logLevel?: string;
  tls?: SlapdTls;
}

/** The identity of root on `ldapi:///` (SASL EXTERNAL, peer credentials). */
export const LDAPI_ROOT_DN = "gidNumber=0+uidNumber=0,cn=peercred,cn=external,cn=auth";

export interface SlapdProviderParams extends SlapdCommon {
  role: "provider";
  /**
   * Let root on this host manage the directory over `ldapi:///` with SASL EXTERNAL
   * (`ldapadd -Y EXTERNAL -H ldapi:///`): the deploy loads entries with no password
   * anywhere. Needs "ldapi:///" among slapd's listeners. Defaults to true.
   */
  localRootManage?: boolean;
  /** syncprov-checkpoint: ops and minutes. Defaults to [100, 10]. */
  checkpoint?: readonly [number, number];
  /** syncprov-sessionlog size. Defaults to 1000. */
  sessionlog?: number;
}

export interface SlapdReplicaParams extends SlapdCommon {
  role: "replica";
  /** syncrepl rid, 1-999, unique per replica of a provider. */
  rid: number;
  /** e.g. "ldap://ldap1.example.org/". Writes are referred there. */
  providerUri: string;
  /**
   * The replication DN's password. It lands in slapd.conf (mode 0600, owner
   * openldap), never on a command line.
   */
  replicationPassword: string;
  /** syncrepl retry schedule. Defaults to "5 10 60 +" (10 × 5 s, then every 60 s). */
  retry?: string;
  /** StartTLS to the provider (checked against tls.caFile). Defaults to false. */
  startTls?: boolean;
}

export type SlapdParams = SlapdProviderParams | SlapdReplicaParams;

const DN =
  /^[A-Za-z][A-Za-z0-9-]*=[^,=+"\\<>;\s][^,=+"\\<>;]*(,[A-Za-z][A-Za-z0-9-]*=[^,=+"\\<>;\s][^,=+"\\<>;]*)*$/;

function checkDn(field: string, dn: string): void {
  if (!DN.test(dn)) throw new RenderError(R, field, `not a DN this renderer accepts: ${JSON.stringify(dn)}`);
}

function checkPath(field: string, path: string): void {
  if (!/^\/[^\s"\\]*$/.test(path))
    throw new RenderError(R, field, `expected an absolute path without spaces, got ${path}`);
}

function checkUnder(field: string, dn: string, suffix: string): void {
  if (!dn.toLowerCase().endsWith(`,${suffix.toLowerCase()}`))
    throw new RenderError(R, field, `${dn} is not under ${suffix}`);
}

/** A value slapd.conf can hold inside double quotes. */
function checkQuotable(field: string, value: string): void {
  if (value.length === 0 || /["\\\s]/.test(value) || !/^[\x21-\x7e]+$/.test(value))
    throw new RenderError(R, field, "must be printable ASCII without spaces, quotes or backslashes");
}

/** Renders slapd.conf for the provider or a replica. */
export function renderSlapdConf(params: SlapdParams): string {
  checkDn("suffix", params.suffix);
  checkDn("rootDn", params.rootDn);
  checkDn("replicationDn", params.replicationDn);
  checkUnder("replicationDn", params.replicationDn, params.suffix);
  checkUnder("rootDn", params.rootDn, params.suffix);
  params.serviceDns.forEach((dn, i) => {
    checkDn(`serviceDns[${i}]`, dn);
    checkUnder(`serviceDns[${i}]`, dn, params.suffix);
  });
  if (
    params.rootPasswordHash !== undefined &&
    !/^\{(SSHA|SSHA256|SSHA512|CRYPT|ARGON2)\}\S+$/.test(params.rootPasswordHash)
  )
    throw new RenderError(
      R,
      "rootPasswordHash",
      "expected a hash such as {SSHA}…, never a clear-text password",
    );
  const schemaDir = params.schemaDir ?? DEBIAN_SLAPD.schemaDir;
  const paths = {
    schemaDir,
    mailinfraSchemaPath: params.mailinfraSchemaPath ?? `${schemaDir}/mailinfra.schema`,
    modulePath: params.modulePath ?? DEBIAN_SLAPD.modulePath,
    directory: params.directory ?? DEBIAN_SLAPD.directory,
    pidFile: params.pidFile ?? DEBIAN_SLAPD.pidFile,
    argsFile: params.argsFile ?? DEBIAN_SLAPD.argsFile,
  };
  for (const [k, v] of Object.entries(paths)) checkPath(k, v);
  if (params.tls !== undefined) {
    checkPath("tls.certFile", params.tls.certFile);
    checkPath("tls.keyFile", params.tls.keyFile);
    if (params.tls.caFile !== undefined) checkPath("tls.caFile", params.tls.caFile);
  }
  const maxSize = params.maxSizeBytes ?? 1024 ** 3;
  if (!Number.isInteger(maxSize) || maxSize < 1024 ** 2)
    throw new RenderError(R, "maxSizeBytes", `expected an integer of at least 1 MiB, got ${maxSize}`);
  const logLevel = params.logLevel ?? "stats";
  if (!/^[A-Za-z0-9 ]+$/.test(logLevel)) throw new RenderError(R, "logLevel", `invalid: ${logLevel}`);

  const common = {
    ...paths,
    suffix: params.suffix,
    rootDn: params.rootDn,
    rootPasswordHash: params.rootPasswordHash ?? null,
    serviceDns: params.serviceDns,
    replicationDn: params.replicationDn,
    maxSize,
    logLevel,
    tls: params.tls === undefined ? null : { ...params.tls, caFile: params.tls.caFile ?? null },
  };
  switch (params.role) {
    case "provider": {
      const [ops, minutes] = params.checkpoint ?? [100, 10];
      const sessionlog = params.sessionlog ?? 1000;
      for (const [k, v] of [
        ["checkpoint", ops],
        ["checkpoint", minutes],
        ["sessionlog", sessionlog],
      ] as const)
        if (!Number.isInteger(v) || v <= 0)
          throw new RenderError(R, k, `expected positive integers, got ${v}`);
      return renderTemplate("ldap/slapd.conf.hbs", {
        ...common,
        role: "provider",
        provider: { checkpoint: `${ops} ${minutes}`, sessionlog },
        manageDn: (params.localRootManage ?? true) ? LDAPI_ROOT_DN : null,
        replica: null,
      });
    }
    case "replica": {
      if (!Number.isInteger(params.rid) || params.rid < 1 || params.rid > 999)
        throw new RenderError(R, "rid", `expected 1-999, got ${params.rid}`);
      if (!/^ldaps?:\/\/[A-Za-z0-9.[\]:-]+(:\d{1,5})?\/?$/.test(params.providerUri))
        throw new RenderError(R, "providerUri", `expected ldap://host[:port]/, got ${params.providerUri}`);
      checkQuotable("replicationPassword", params.replicationPassword);
      const retry = params.retry ?? "5 10 60 +";
      if (!/^(\d+ (\d+|\+) ?)+$/.test(retry.trim()))
        throw new RenderError(R, "retry", `invalid schedule: ${retry}`);
      const startTls = params.startTls ?? false;
      if (startTls && params.tls?.caFile === undefined)
        throw new RenderError(R, "startTls", "needs tls.caFile to check the provider's certificate");
      return renderTemplate("ldap/slapd.conf.hbs", {
        ...common,
        role: "replica",
        provider: null,
        // A replica takes writes only from syncrepl: no local manager.
        manageDn: null,
        replica: {
          rid: String(params.rid).padStart(3, "0"),
          providerUri: params.providerUri,
          credentials: params.replicationPassword,
          retry: retry.trim(),
          startTls,
        },
      });
    }
    default:
      return assertNever(params, "slapd role");
  }
}

/** An account under ou=services with a password (simpleSecurityObject). */
export interface LdapServiceAccount {
  /** cn of the account; its DN is `serviceDn(suffix, name)`. */
  name: string;
  password: string;
  description?: string;
}

export interface BaseLdifParams {
  /** Base DN: its first RDN must be dc= or o=. */
  suffix: string;
  /** `o` of the base entry. */
  organization: string;
  /** Read-only service accounts (mx, relay, store, webmail …). */
  services: readonly LdapServiceAccount[];
  /** The replication account. */
  replication: LdapServiceAccount;
  /**
   * Seed for the {SSHA} salts. Without it every render draws random salts, so the
   * LDIF (and a content hash of it) changes on each render; with it, hashes are
   * stable per DN and password.
   */
  saltSeed?: string;
}

/**
 * Renders the base entries as LDIF (for `ldapadd -x -D <rootdn> -y <pwfile>` or
 * `slapadd`): the base, ou=people, ou=services, ou=groups, the service accounts and
 * the replication account with {SSHA} hashes. No clear-text password is written.
 */
export function renderBaseLdif(params: BaseLdifParams): string {
  checkDn("suffix", params.suffix);
  const first = params.suffix.split(",")[0]!;
  const [attr, value] = first.split("=") as [string, string];
  if (!/^[^\n\r]+$/.test(params.organization) || /^[\s:<]/.test(params.organization))
    throw new RenderError(R, "organization", "must be one line not starting with a space, ':' or '<'");
  let base: { objectClasses: string[]; attributes: string[] };
  switch (attr.toLowerCase()) {
    case "dc":
      base = {
        objectClasses: ["top", "dcObject", "organization"],
        attributes: [`dc: ${value}`, `o: ${params.organization}`],
      };
      break;
    case "o":
      // The RDN's value is the organization's name.
      base = { objectClasses: ["top", "organization"], attributes: [`o: ${value}`] };
      break;
    default:
      throw new RenderError(R, "suffix", `the first RDN must be dc= or o=, got ${first}`);
  }
  const accounts = [...params.services, params.replication].map((a, i) => {
    const field = i < params.services.length ? `services[${i}]` : "replication";
    if (!/^[a-z][a-z0-9-]*$/.test(a.name))
      throw new RenderError(R, `${field}.name`, `invalid account name ${a.name}`);
    if (a.password.length < 8) throw new RenderError(R, `${field}.password`, "must be at least 8 characters");
    const dn = serviceDn(params.suffix, a.name);
    const salt = params.saltSeed === undefined ? undefined : derivedSalt(params.saltSeed, dn);
    const description =
      a.description ?? (i < params.services.length ? `mailinfra service ${a.name}` : "syncrepl");
    if (/[\n\r]/.test(description) || /^[\s:<]/.test(description))
      throw new RenderError(
        R,
        `${field}.description`,
        "must be one line not starting with a space, ':' or '<'",
      );
    return { dn, name: a.name, description, hash: sshaHash(a.password, salt) };
  });
  const names = accounts.map((a) => a.name);
  if (new Set(names).size !== names.length)
    throw new RenderError(R, "services", "an account name is used twice");
  return renderTemplate("ldap/base.ldif.hbs", {
    suffix: params.suffix,
    base,
    accounts,
  });
}

export interface SlapdDefaultsParams {
  /** Defaults to /etc/ldap/slapd.conf. */
  confPath?: string;
  /** Listeners. Defaults to ["ldap:///", "ldapi:///"]. */
  services?: readonly string[];
  /** Must match slapd.conf's pidfile. Defaults to /var/run/slapd/slapd.pid. */
  pidFile?: string;
}

/** Renders /etc/default/slapd so Debian's init script runs `slapd -f <confPath>`. */
export function renderSlapdDefaults(params: SlapdDefaultsParams = {}): string {
  const confPath = params.confPath ?? DEBIAN_SLAPD.confPath;
  checkPath("confPath", confPath);
  const pidFile = params.pidFile ?? DEBIAN_SLAPD.pidFile;
  checkPath("pidFile", pidFile);
  const services = params.services ?? ["ldap:///", "ldapi:///"];
  services.forEach((s, i) => {
    if (!/^ldap(s|i)?:\/\/[^\s"'`$\\]*$/.test(s))
      throw new RenderError(R, `services[${i}]`, `not an LDAP URL: ${s}`);
  });
  return renderTemplate("ldap/slapd.default.hbs", { confPath, pidFile, services: services.join(" ") });
}
