/**
 * `LdapDirectory`: OpenLDAP (Debian's slapd, run from a rendered slapd.conf) as
 * one provider (syncprov) and its syncrepl replicas (refreshAndPersist): the
 * mail schema, ACLs and indexes (in slapd.conf), then the base entries and
 * service accounts on the provider, then the replicas, each of which must
 * receive those entries before its step succeeds.
 *
 * TLS (`tls`): slapd serves StartTLS on the ldap:// port (RFC 4513 §3) and
 * refuses a simple bind over a connection without TLS (`security
 * simple_bind=64`; ldapi:/// on the host itself counts 71, so the deploy's own
 * loads still work). StartTLS on 389 rather than ldaps:// on 636: one port for
 * everything, what OpenLDAP, ldap-utils and RFC 4513 describe, and a client that
 * forgets TLS is refused loudly instead of reaching a second, plaintext port.
 * The certificate is made as the services' certificates are (components/tls.ts):
 * without tlsCertificate, ONE self-signed pair for all LDAP hosts' names,
 * generated on the provider and copied to the replicas (SharedTls); it is its
 * own CA, installed as /etc/ldap/tls/ca.pem here and handed to every service
 * (`caCertificate`). With tlsCertificate, that pair, checked against
 * tlsCaCertificate (or the system's CAs). Replicas run syncrepl with
 * `starttls=critical` and `tls_reqcert=demand` against that CA.
 *
 * Credentials: slapd.conf holds only the rootdn's {SSHA} hash on the provider
 * and the replication password on replicas (mode 0600, owner openldap); the
 * admin password for ldapadd is a 0600 file read with `-y`. Nothing secret is
 * in a command line.
 */
import { createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import type { remote } from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import {
  type Connection,
  hostCommand,
  PUT_FUNCTION,
  STAGE_DIR,
  script,
  sha256,
  shq,
  stageFile,
} from "./remote.js";
import {
  DEBIAN_SLAPD,
  derivedSalt,
  renderBaseLdif,
  renderSlapdConf,
  renderSlapdDefaults,
  serviceDn,
  sshaHash,
} from "./render/index.js";
import { templateUrl } from "./render/template.js";
import { SharedTls, Tls, type TlsPaths } from "./tls.js";

/** Where slapd's pair lives (owner openldap; the directory 0750 root:openldap). */
export const LDAP_TLS_DIR = "/etc/ldap/tls";
export const LDAP_TLS: TlsPaths = {
  dir: LDAP_TLS_DIR,
  cert: `${LDAP_TLS_DIR}/cert.pem`,
  key: `${LDAP_TLS_DIR}/key.pem`,
  source: `${LDAP_TLS_DIR}/source`,
  restartMarker: `${STAGE_DIR}/ldap-tls-changed`,
  stage: "ldap-tls",
};
/** The CA slapd (a replica, for its provider) checks against, when the stack has one. */
export const LDAP_CA_FILE = `${LDAP_TLS_DIR}/ca.pem`;
/** Debian's bundle of the system's CAs (a given certificate without tlsCaCertificate). */
export const SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt";

/** The mdb directory of the mail directory (not Debian's default database). */
export const LDAP_DB_DIR = "/var/lib/ldap/mailinfra";
export const REPLICATION_ACCOUNT = "replicator";
/** How long a replica may take to receive the base entries. */
export const REPLICA_SYNC_SECONDS = 60;

/**
 * A service account's bind password: HMAC-SHA256 of the account name under the
 * ldapServicePassword master secret. Distinct per account, one secret to keep.
 */
export function servicePassword(master: string, account: string): string {
  return createHmac("sha256", master).update(`mailinfra-ldap:${account}`).digest("base64url").slice(0, 32);
}

/**
 * The ldapmodify LDIF that sets every account's userPassword of a base LDIF, so
 * a changed secret reaches entries that already exist.
 */
export function passwordRefreshLdif(baseLdif: string): string {
  const out: string[] = [];
  for (const entry of baseLdif.split(/\n\s*\n/)) {
    const dn = /^dn: (.+)$/m.exec(entry)?.[1];
    const pw = /^userPassword: (.+)$/m.exec(entry)?.[1];
    if (dn && pw) out.push(`dn: ${dn}\nchangetype: modify\nreplace: userPassword\nuserPassword: ${pw}\n-\n`);
  }
  return out.join("\n");
}

/** The base entries and accounts (LDIF with {SSHA} hashes) for the given secrets. */
export function baseEntriesLdif(
  a: Pick<LdapDirectoryArgs, "suffix" | "organization" | "serviceAccounts" | "saltSeed">,
  serviceMaster: string,
  replicationPassword: string,
): string {
  return renderBaseLdif({
    suffix: a.suffix,
    organization: a.organization,
    services: a.serviceAccounts.map((name) => ({ name, password: servicePassword(serviceMaster, name) })),
    replication: { name: REPLICATION_ACCOUNT, password: replicationPassword },
    saltSeed: a.saltSeed,
  });
}

export interface LdapNode {
  name: string;
  address: string;
  connection: Connection;
  dependsOn: pulumi.Input<pulumi.Resource>[];
}

export interface LdapDirectoryArgs {
  provider: LdapNode;
  replicas: readonly LdapNode[];
  suffix: string;
  organization: string;
  rootDn: string;
  port: number;
  adminPassword: pulumi.Input<string>;
  replicationPassword: pulumi.Input<string>;
  /** Master secret of the service accounts' passwords. */
  servicePassword: pulumi.Input<string>;
  /** Read-only service accounts (cn=<name>,ou=services,<suffix>). */
  serviceAccounts: readonly string[];
  /** Seed of the {SSHA} salts (stable hashes across runs). */
  saltSeed: string;
  /** TLS on slapd (absent: plaintext ldap://, as before). */
  tls?: LdapTlsArgs;
}

export interface LdapTlsArgs {
  /** DNS names and addresses of the LDAP hosts (the certificate's names when self-signed). */
  dnsNames: readonly string[];
  ipAddresses: readonly string[];
  /** The stack's given pair; absent → one self-signed pair for the LDAP hosts. */
  given?: { certificate: pulumi.Input<string>; privateKey: pulumi.Input<string> };
  /** The CA of the given pair; absent with `given` → the system's CAs. */
  givenCa?: pulumi.Input<string>;
}

/** Waits until slapd answers on ldapi:/// (any LDAP reply, even a refused bind). */
const WAIT_SLAPD = [
  "up=0",
  "for i in $(seq 1 50); do",
  "  rc=0; ldapsearch -x -H ldapi:/// -s base -b '' >/dev/null 2>&1 || rc=$?",
  '  if [ "$rc" != 255 ]; then up=1; break; fi',
  "  sleep 0.2",
  "done",
  '[ "$up" = 1 ] || { echo "mailinfra: slapd does not answer on ldapi:///" >&2; journalctl -u slapd -n 30 --no-pager >&2; exit 1; }',
].join("\n");

/**
 * Installs schema, slapd.conf and /etc/default/slapd, (re)starts slapd only on
 * change. The staged slapd.conf is checked with slaptest BEFORE it replaces the
 * installed one, on a copy whose pidfile/argsfile point to a scratch directory:
 * slaptest writes the pidfile, and must never overwrite the running slapd's.
 */
export function configureScript(withCa = false): string {
  return script(
    PUT_FUNCTION,
    `install -d -m 0700 -o openldap -g openldap ${LDAP_DB_DIR}`,
    withCa && `put ${STAGE_DIR}/ldap-ca.pem ${LDAP_CA_FILE} 0644 root:root`,
    `put ${STAGE_DIR}/mailinfra.schema ${DEBIAN_SLAPD.schemaDir}/mailinfra.schema 0644 root:root`,
    "t=$(mktemp -d)",
    `sed -e "s|^pidfile .*|pidfile $t/slapd.pid|" -e "s|^argsfile .*|argsfile $t/slapd.args|" ${STAGE_DIR}/slapd.conf > "$t/slapd.conf"`,
    'if ! out=$(slaptest -u -f "$t/slapd.conf" 2>&1); then',
    '  rm -rf "$t"',
    `  echo "mailinfra: slaptest rejects the new slapd.conf (the installed one is left as it is):" >&2`,
    `  printf '%s\\n' "$out" >&2; exit 1`,
    "fi",
    'rm -rf "$t"',
    `put ${STAGE_DIR}/slapd.conf ${DEBIAN_SLAPD.confPath} 0600 openldap:openldap`,
    `put ${STAGE_DIR}/slapd.default /etc/default/slapd 0644 root:root`,
    "systemctl enable -q slapd 2>/dev/null || systemctl enable slapd",
    // A new certificate (the TLS step touched the marker) needs a restart too.
    `if [ -e ${LDAP_TLS.restartMarker} ]; then changed=1; fi`,
    'if [ "$changed" = 1 ] || ! systemctl is-active -q slapd; then',
    "  systemctl restart slapd",
    '  echo "slapd (re)started"',
    "fi",
    `rm -f ${LDAP_TLS.restartMarker}`,
    WAIT_SLAPD,
  );
}

/** The configure step without TLS material to install. */
export const CONFIGURE_SCRIPT = configureScript(false);

/**
 * Adds the base entries and service accounts (existing entries are kept, only
 * "Already exists" is tolerated), then sets the accounts' passwords. Skipped
 * when the same LDIF was applied before.
 */
export function baseScript(
  rootDn: string,
  where: { uri: string; dir: string } = { uri: "ldapi:///", dir: STAGE_DIR },
): string {
  return script(
    "umask 077",
    `cd ${shq(where.dir)}`,
    "if cmp -s base.ldif base.ldif.applied && cmp -s passwords.ldif passwords.ldif.applied; then",
    '  echo "base entries unchanged"; exit 0',
    "fi",
    // As the rootdn, the password read from a 0600 file (-y), never from the command line.
    `ldap() { c=$1; shift; "$c" -x -H ${shq(where.uri)} -D ${shq(rootDn)} -y ldap-admin.pw "$@"; }`,
    "rc=0; out=$(ldap ldapadd -c -f base.ldif 2>&1) || rc=$?",
    // Entries kept from an earlier run are fine ("Already exists"); anything else is not.
    "bad=$(printf '%s\\n' \"$out\" | grep -E '^ldap_|^ldapadd:' | grep -v 'Already exists (68)' || true)",
    'if [ -n "$bad" ]; then echo "mailinfra: loading the base entries failed (ldapadd exit $rc):" >&2; printf \'%s\\n\' "$out" >&2; exit 1; fi',
    "ldap ldapmodify -f passwords.ldif >/dev/null",
    "cp base.ldif base.ldif.applied; cp passwords.ldif passwords.ldif.applied",
    'echo "base entries loaded"',
  );
}

/** After configuring a replica: wait until syncrepl has brought ou=services over. */
export function replicaSyncScript(suffix: string, confPath: string = DEBIAN_SLAPD.confPath): string {
  return [
    "synced=0",
    `for i in $(seq 1 ${REPLICA_SYNC_SECONDS * 2}); do`,
    `  if slapcat -f ${shq(confPath)} -a ${shq("(ou=services)")} 2>/dev/null | grep -qi ${shq(`^dn: ou=services,${suffix}$`)}; then synced=1; break; fi`,
    "  sleep 0.5",
    "done",
    `[ "$synced" = 1 ] || { echo "mailinfra: the replica has not received ou=services,${suffix} from the provider within ${REPLICA_SYNC_SECONDS} s" >&2; exit 1; }`,
    'echo "replica in sync"',
  ].join("\n");
}

export class LdapDirectory extends pulumi.ComponentResource {
  /** Every step: services may bind once these are done. */
  readonly ready: remote.Command[];
  readonly providerConfigured: remote.Command;
  readonly baseEntries: remote.Command;
  readonly replicasConfigured: remote.Command[];
  /** ldap://<address>:<port>/ per host name. */
  readonly uris: Record<string, string>;
  /** With TLS: the PEM the services trust for the LDAP hosts (absent → the system's CAs). */
  readonly caCertificate: pulumi.Output<string> | undefined;

  constructor(name: string, args: LdapDirectoryArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mailinfra:ldap:LdapDirectory", name, {}, opts);
    const uri = (n: LdapNode) => `ldap://${n.address}${args.port === 389 ? "" : `:${args.port}`}/`;
    this.uris = Object.fromEntries([args.provider, ...args.replicas].map((n) => [n.name, uri(n)]));
    const replicationDn = serviceDn(args.suffix, REPLICATION_ACCOUNT);
    const serviceDns = args.serviceAccounts.map((a) => serviceDn(args.suffix, a));
    const schema = readFileSync(templateUrl("ldap/mailinfra.schema"), "utf8");
    // StartTLS on the one ldap:// port (see the header): no ldaps:// listener.
    const defaults = renderSlapdDefaults({ services: [`ldap://:${args.port}/`, "ldapi:///"] });
    if (args.replicas.length > 998) throw new pulumi.ResourceError("at most 998 replicas", this);

    // TLS: the pair on every LDAP host, before its slapd.conf names it.
    const nodes = [args.provider, ...args.replicas];
    const tlsStep: Record<string, { resource: pulumi.Resource; fingerprint: pulumi.Input<string> }> = {};
    let caCertificate: pulumi.Output<string> | undefined;
    const t = args.tls;
    if (t !== undefined && t.given === undefined) {
      const shared = new SharedTls(
        `${name}-tls`,
        {
          nodes: nodes.map((n) => ({ name: n.name, connection: n.connection, dependsOn: n.dependsOn })),
          owner: "openldap",
          dnsNames: t.dnsNames,
          ipAddresses: t.ipAddresses,
          paths: LDAP_TLS,
        },
        { parent: this },
      );
      const steps = [shared.generate, ...shared.installs];
      nodes.forEach((n, i) => {
        tlsStep[n.name] = { resource: steps[i]!, fingerprint: shared.fingerprints[n.name]! };
      });
      // Self-signed: the certificate is its own CA.
      caCertificate = shared.certificate;
    } else if (t?.given !== undefined) {
      for (const n of nodes) {
        const pair = new Tls(
          `${name}-${n.name}-tls`,
          {
            connection: n.connection,
            owner: "openldap",
            dnsNames: t.dnsNames,
            ipAddresses: t.ipAddresses,
            given: t.given,
            dependsOn: n.dependsOn,
            paths: LDAP_TLS,
          },
          { parent: this },
        );
        tlsStep[n.name] = { resource: pair, fingerprint: pair.fingerprint };
      }
      if (t.givenCa !== undefined) caCertificate = pulumi.output(t.givenCa);
    }
    this.caCertificate = caCertificate;
    const slapdTls =
      t === undefined
        ? undefined
        : {
            certFile: LDAP_TLS.cert,
            keyFile: LDAP_TLS.key,
            caFile: caCertificate === undefined ? SYSTEM_CA_BUNDLE : LDAP_CA_FILE,
          };
    const common = {
      suffix: args.suffix,
      rootDn: args.rootDn,
      serviceDns,
      replicationDn,
      directory: LDAP_DB_DIR,
      ...(slapdTls ? { tls: slapdTls } : {}),
    };

    const configure = (node: LdapNode, slapdConf: pulumi.Input<string>, extra: string | undefined) => {
      const n = `${name}-${node.name}`;
      const tls = tlsStep[node.name];
      const o = { parent: this, dependsOn: [...node.dependsOn, ...(tls ? [tls.resource] : [])] };
      const files = [
        stageFile(`${n}-schema`, node.connection, { name: "mailinfra.schema", content: schema }, o),
        stageFile(`${n}-slapd-conf`, node.connection, { name: "slapd.conf", content: slapdConf }, o),
        stageFile(`${n}-slapd-default`, node.connection, { name: "slapd.default", content: defaults }, o),
      ];
      if (caCertificate !== undefined)
        files.push(
          stageFile(`${n}-ldap-ca`, node.connection, { name: "ldap-ca.pem", content: caCertificate }, o),
        );
      const base = configureScript(caCertificate !== undefined);
      const create = extra === undefined ? base : `${base}\n${extra}`;
      return {
        files,
        step: (deps: pulumi.Resource[]) =>
          hostCommand(
            `${n}-configure`,
            {
              connection: node.connection,
              create,
              delete: script(
                "systemctl disable -q --now slapd 2>/dev/null || systemctl stop slapd || true",
                `rm -f ${DEBIAN_SLAPD.confPath} ${DEBIAN_SLAPD.schemaDir}/mailinfra.schema`,
              ),
              triggers: [...files.map((f) => f.triggers), sha256(create), ...(tls ? [tls.fingerprint] : [])],
            },
            { parent: this, dependsOn: [...files, ...deps] },
          ),
      };
    };

    // Provider: slapd.conf holds the rootdn's hash only.
    const providerConf = pulumi.output(args.adminPassword).apply((pw) =>
      renderSlapdConf({
        ...common,
        role: "provider",
        rootPasswordHash: sshaHash(pw, derivedSalt(args.saltSeed, args.rootDn)),
      }),
    );
    const p = configure(args.provider, pulumi.secret(providerConf), undefined);
    this.providerConfigured = p.step([]);

    const baseLdif = pulumi
      .all([args.servicePassword, args.replicationPassword])
      .apply(([master, repl]) => baseEntriesLdif(args, master, repl));
    const pn = `${name}-${args.provider.name}`;
    const po = { parent: this, dependsOn: [this.providerConfigured] };
    const baseFiles = [
      stageFile(
        `${pn}-admin-pw`,
        args.provider.connection,
        { name: "ldap-admin.pw", content: pulumi.secret(args.adminPassword) },
        po,
      ),
      stageFile(
        `${pn}-base-ldif`,
        args.provider.connection,
        { name: "base.ldif", content: pulumi.secret(baseLdif) },
        po,
      ),
      stageFile(
        `${pn}-passwords-ldif`,
        args.provider.connection,
        { name: "passwords.ldif", content: pulumi.secret(baseLdif.apply(passwordRefreshLdif)) },
        po,
      ),
    ];
    const base = baseScript(args.rootDn);
    this.baseEntries = hostCommand(
      `${pn}-base`,
      {
        connection: args.provider.connection,
        create: base,
        // The entries stay with the database; only the deploy's copies go.
        delete: script(
          `rm -f ${STAGE_DIR}/base.ldif* ${STAGE_DIR}/passwords.ldif* ${STAGE_DIR}/ldap-admin.pw`,
        ),
        triggers: [...baseFiles.map((f) => f.triggers), sha256(base)],
      },
      { parent: this, dependsOn: baseFiles },
    );

    // Replicas: after the provider holds the replication account.
    const providerUri = uri(args.provider);
    this.replicasConfigured = args.replicas.map((node, i) => {
      const conf = pulumi.output(args.replicationPassword).apply((pw) =>
        renderSlapdConf({
          ...common,
          role: "replica",
          rid: i + 1,
          providerUri,
          replicationPassword: pw,
          // syncrepl: StartTLS required, the provider's certificate checked against the CA.
          startTls: t !== undefined,
        }),
      );
      return configure(node, pulumi.secret(conf), replicaSyncScript(args.suffix)).step([this.baseEntries]);
    });
    this.ready = [this.providerConfigured, this.baseEntries, ...this.replicasConfigured];
    this.registerOutputs({ uris: this.uris });
  }
}
