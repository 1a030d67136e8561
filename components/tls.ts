/**
 * `Tls`: the certificate and key of a host's services, mode 0600, owned by the
 * services' user. Either given (the tlsCertificate/tlsPrivateKey secrets) or,
 * for lab and staging when none is given, generated self-signed ON the host with
 * openssl for the service names (host names, VIP names, addresses); regenerated
 * only when that list changes. A change marks the services that serve TLS for a restart.
 */
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
  TLS_RESTART_MARKER,
} from "./remote.js";

export const TLS_DIR = "/etc/mailinfra/tls";
export const TLS_CERT = `${TLS_DIR}/cert.pem`;
export const TLS_KEY = `${TLS_DIR}/key.pem`;
/** Which kind of step installed the pair now there: its delete removes the pair only if it is still its own. */
export const TLS_SOURCE = `${TLS_DIR}/source`;

export type TlsSource = "self-signed" | "given" | "shared";

/**
 * Where a TLS step installs its pair. The runtime's services use RUNTIME_TLS;
 * slapd uses LDAP_TLS (owner openldap): same scripts, same two sources
 * (self-signed or the given secrets), a different place.
 */
export interface TlsPaths {
  dir: string;
  cert: string;
  key: string;
  source: string;
  /** Touched when the pair changes: the consumer's install step restarts what serves it. */
  restartMarker: string;
  /** Prefix of the files staged in STAGE_DIR (two pairs on one host must not share names). */
  stage: string;
}

export const RUNTIME_TLS: TlsPaths = {
  dir: TLS_DIR,
  cert: TLS_CERT,
  key: TLS_KEY,
  source: TLS_SOURCE,
  restartMarker: TLS_RESTART_MARKER,
  stage: "tls",
};

/**
 * The delete of a TLS step. When the stack switches between a self-signed and a
 * given pair, Pulumi creates the new step and only then deletes the old one: an
 * unconditional `rm -rf` would remove the pair just installed.
 */
export function cleanupScript(source: TlsSource, p: TlsPaths = RUNTIME_TLS): string {
  return script(
    `if [ ! -e ${p.source} ] || [ "$(cat ${p.source})" = ${shq(source)} ]; then rm -rf ${p.dir}; fi`,
  );
}

export interface TlsArgs {
  connection: Connection;
  owner: string;
  /** DNS names; the first is the subject's CN. */
  dnsNames: readonly string[];
  ipAddresses: readonly string[];
  /** Given material (secrets); absent → self-signed on the host. */
  given?: { certificate: pulumi.Input<string>; privateKey: pulumi.Input<string> };
  dependsOn: pulumi.Input<pulumi.Resource>[];
  /** Defaults to RUNTIME_TLS. */
  paths?: TlsPaths;
}

/** `DNS:a,DNS:b,IP:x` for subjectAltName. */
export function subjectAltNames(dnsNames: readonly string[], ips: readonly string[]): string {
  return [...dnsNames.map((n) => `DNS:${n}`), ...ips.map((i) => `IP:${i}`)].join(",");
}

/** Generates the self-signed pair unless one for exactly these names is there; prints its fingerprint. */
export function selfSignedScript(
  owner: string,
  dnsNames: readonly string[],
  ips: readonly string[],
  p: TlsPaths = RUNTIME_TLS,
): string {
  const san = subjectAltNames(dnsNames, ips);
  return script(
    "umask 077",
    `dir=${p.dir}`,
    `want=${shq(san)}`,
    `install -d -m 0750 -o root -g ${owner} "$dir"`,
    `if [ -s ${p.cert} ] && [ -s ${p.key} ] && [ "$(cat "$dir/names" 2>/dev/null)" = "$want" ]; then`,
    "  echo 'self-signed certificate unchanged' >&2",
    "else",
    `  openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 825 -subj ${shq(`/CN=${dnsNames[0] ?? "localhost"}`)} \\`,
    `    -addext "subjectAltName=$want" -keyout "$dir/key.pem.new" -out "$dir/cert.pem.new" 2>/dev/null`,
    `  chown ${owner}:${owner} "$dir/key.pem.new" "$dir/cert.pem.new"`,
    `  chmod 0600 "$dir/key.pem.new" "$dir/cert.pem.new"`,
    `  mv -f "$dir/key.pem.new" ${p.key}`,
    `  mv -f "$dir/cert.pem.new" ${p.cert}`,
    `  printf '%s' "$want" > "$dir/names"`,
    `  touch ${p.restartMarker}`,
    "  echo 'self-signed certificate generated' >&2",
    "fi",
    `printf self-signed > ${p.source}`,
    `openssl x509 -in ${p.cert} -noout -fingerprint -sha256`,
  );
}

/**
 * The pair generator's script: the self-signed pair as selfSignedScript makes it,
 * then the certificate and the key on stdout (a secret output) for the other nodes.
 */
export function sharedSelfSignedScript(
  owner: string,
  dnsNames: readonly string[],
  ips: readonly string[],
  p: TlsPaths = RUNTIME_TLS,
): string {
  const base = selfSignedScript(owner, dnsNames, ips, p).split("\n");
  // Drop the fingerprint line: the PEM pair is the output.
  return [...base.slice(0, -1), `cat ${p.cert} ${p.key}`].join("\n");
}

/** Splits the PEM pair given on stdin into the staging area, then installs it as givenScript does. */
export function sharedInstallScript(owner: string, p: TlsPaths = RUNTIME_TLS): string {
  return script(
    "umask 077",
    `pair=${STAGE_DIR}/${p.stage}-pair.pem`,
    'cat > "$pair"',
    `sed -n '/-BEGIN CERTIFICATE-/,/-END CERTIFICATE-/p' "$pair" > ${STAGE_DIR}/${p.stage}-cert.pem`,
    `sed -n '/-BEGIN [A-Z ]*PRIVATE KEY-/,/-END [A-Z ]*PRIVATE KEY-/p' "$pair" > ${STAGE_DIR}/${p.stage}-key.pem`,
    'rm -f "$pair"',
    `[ -s ${STAGE_DIR}/${p.stage}-cert.pem ] && [ -s ${STAGE_DIR}/${p.stage}-key.pem ] || { echo "mailinfra: no certificate and key came from the pair's first node" >&2; exit 1; }`,
    givenScript(owner, "shared", p).replace(/^set -eu\n/, ""),
  );
}

/** Installs the staged given pair (0600, owner) and checks that key and certificate match. */
export function givenScript(owner: string, source: TlsSource = "given", p: TlsPaths = RUNTIME_TLS): string {
  return script(
    PUT_FUNCTION,
    `install -d -m 0750 -o root -g ${owner} ${p.dir}`,
    `put ${STAGE_DIR}/${p.stage}-cert.pem ${p.cert} 0600 ${owner}:${owner}`,
    `put ${STAGE_DIR}/${p.stage}-key.pem ${p.key} 0600 ${owner}:${owner}`,
    `[ "$(openssl x509 -in ${p.cert} -noout -pubkey | sha256sum)" = "$(openssl pkey -in ${p.key} -pubout | sha256sum)" ] ||`,
    `  { echo "mailinfra: tlsPrivateKey does not belong to tlsCertificate" >&2; exit 1; }`,
    `rm -f ${p.dir}/names`,
    `printf '%s' ${shq(source)} > ${p.source}`,
    `if [ "$changed" = 1 ]; then touch ${p.restartMarker}; fi`,
    `openssl x509 -in ${p.cert} -noout -fingerprint -sha256`,
  );
}

export class Tls extends pulumi.ComponentResource {
  /** The certificate's SHA-256 fingerprint (changes when the certificate does). */
  readonly fingerprint: pulumi.Output<string>;
  readonly step: remote.Command;

  constructor(name: string, args: TlsArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mailinfra:tls:Tls", name, {}, opts);
    if (args.dnsNames.length === 0) throw new pulumi.ResourceError("at least one DNS name is needed", this);
    const p = args.paths ?? RUNTIME_TLS;
    if (args.given === undefined) {
      const create = selfSignedScript(args.owner, args.dnsNames, args.ipAddresses, p);
      this.step = hostCommand(
        `${name}-selfsigned`,
        {
          connection: args.connection,
          create,
          delete: cleanupScript("self-signed", p),
          triggers: [sha256(create)],
        },
        { parent: this, dependsOn: args.dependsOn },
      );
    } else {
      const cert = stageFile(
        `${name}-cert`,
        args.connection,
        { name: `${p.stage}-cert.pem`, content: args.given.certificate },
        { parent: this, dependsOn: args.dependsOn },
      );
      const key = stageFile(
        `${name}-key`,
        args.connection,
        { name: `${p.stage}-key.pem`, content: pulumi.secret(args.given.privateKey) },
        { parent: this, dependsOn: args.dependsOn },
      );
      this.step = hostCommand(
        `${name}-install`,
        {
          connection: args.connection,
          create: givenScript(args.owner, "given", p),
          delete: cleanupScript("given", p),
          triggers: [cert.triggers, key.triggers],
        },
        { parent: this, dependsOn: [cert, key] },
      );
    }
    this.fingerprint = this.step.stdout;
    this.registerOutputs({ fingerprint: this.fingerprint });
  }
}

export interface SharedTlsNode {
  name: string;
  connection: Connection;
  dependsOn: pulumi.Input<pulumi.Resource>[];
}

export interface SharedTlsArgs {
  /** The first node generates the pair; the others receive the same certificate and key. */
  nodes: readonly SharedTlsNode[];
  owner: string;
  /** DNS names; the first (the VIP's service name) is the subject's CN. */
  dnsNames: readonly string[];
  ipAddresses: readonly string[];
  /** Defaults to RUNTIME_TLS. */
  paths?: TlsPaths;
}

/**
 * `SharedTls`: ONE self-signed certificate for nodes that serve the same name
 * (the store pair behind the VIP), so clients see the same certificate after a
 * failover. Generated once, on the first node (only when missing or when its
 * names change); its PEM pair is a secret output that reaches the other nodes
 * on stdin, never on a command line.
 */
export class SharedTls extends pulumi.ComponentResource {
  /** Per node: a value that changes when that node's certificate does. */
  readonly fingerprints: Record<string, pulumi.Output<string>> = {};
  readonly generate: remote.Command;
  readonly installs: remote.Command[] = [];
  /** The certificate (public part of the pair; a secret Output because the pair is). */
  readonly certificate: pulumi.Output<string>;

  constructor(name: string, args: SharedTlsArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mailinfra:tls:SharedTls", name, {}, opts);
    const [first, ...rest] = args.nodes;
    if (!first) throw new pulumi.ResourceError("a shared certificate needs a node", this);
    const p = args.paths ?? RUNTIME_TLS;
    if (args.dnsNames.length === 0) throw new pulumi.ResourceError("at least one DNS name is needed", this);
    const create = sharedSelfSignedScript(args.owner, args.dnsNames, args.ipAddresses, p);
    this.generate = hostCommand(
      `${name}-${first.name}-selfsigned`,
      {
        connection: first.connection,
        create,
        delete: cleanupScript("self-signed", p),
        triggers: [sha256(create)],
      },
      {
        parent: this,
        dependsOn: first.dependsOn,
        additionalSecretOutputs: ["stdout"],
      },
    );
    const pair = pulumi.secret(this.generate.stdout);
    const end = "-----END CERTIFICATE-----";
    this.certificate = pair.apply(
      (x) => `${x.slice(x.indexOf("-----BEGIN CERTIFICATE-----"), x.indexOf(end))}${end}\n`,
    );
    const certHash = pair.apply((x) => sha256(x.slice(0, x.indexOf(end))));
    this.fingerprints[first.name] = certHash;
    for (const node of rest) {
      const install = hostCommand(
        `${name}-${node.name}-install`,
        {
          connection: node.connection,
          create: sharedInstallScript(args.owner, p),
          delete: cleanupScript("shared", p),
          stdin: pair,
          triggers: [certHash, sha256(sharedInstallScript(args.owner, p))],
        },
        { parent: this, dependsOn: [this.generate, ...node.dependsOn] },
      );
      this.installs.push(install);
      this.fingerprints[node.name] = install.stdout;
    }
    this.registerOutputs({});
  }
}
