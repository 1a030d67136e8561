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
 * The delete of a TLS step. When the stack switches between a self-signed and a
 * given pair, Pulumi creates the new step and only then deletes the old one: an
 * unconditional `rm -rf` would remove the pair just installed.
 */
export function cleanupScript(source: TlsSource): string {
  return script(
    `if [ ! -e ${TLS_SOURCE} ] || [ "$(cat ${TLS_SOURCE})" = ${shq(source)} ]; then rm -rf ${TLS_DIR}; fi`,
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
}

/** `DNS:a,DNS:b,IP:x` for subjectAltName. */
export function subjectAltNames(dnsNames: readonly string[], ips: readonly string[]): string {
  return [...dnsNames.map((n) => `DNS:${n}`), ...ips.map((i) => `IP:${i}`)].join(",");
}

/** Generates the self-signed pair unless one for exactly these names is there; prints its fingerprint. */
export function selfSignedScript(owner: string, dnsNames: readonly string[], ips: readonly string[]): string {
  const san = subjectAltNames(dnsNames, ips);
  return script(
    "umask 077",
    `dir=${TLS_DIR}`,
    `want=${shq(san)}`,
    `install -d -m 0750 -o root -g ${owner} "$dir"`,
    `if [ -s ${TLS_CERT} ] && [ -s ${TLS_KEY} ] && [ "$(cat "$dir/names" 2>/dev/null)" = "$want" ]; then`,
    "  echo 'self-signed certificate unchanged' >&2",
    "else",
    `  openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 825 -subj ${shq(`/CN=${dnsNames[0] ?? "localhost"}`)} \\`,
    `    -addext "subjectAltName=$want" -keyout "$dir/key.pem.new" -out "$dir/cert.pem.new" 2>/dev/null`,
    `  chown ${owner}:${owner} "$dir/key.pem.new" "$dir/cert.pem.new"`,
    `  chmod 0600 "$dir/key.pem.new" "$dir/cert.pem.new"`,
    `  mv -f "$dir/key.pem.new" ${TLS_KEY}`,
    `  mv -f "$dir/cert.pem.new" ${TLS_CERT}`,
    `  printf '%s' "$want" > "$dir/names"`,
    `  touch ${TLS_RESTART_MARKER}`,
    "  echo 'self-signed certificate generated' >&2",
    "fi",
    `printf self-signed > ${TLS_SOURCE}`,
    `openssl x509 -in ${TLS_CERT} -noout -fingerprint -sha256`,
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
): string {
  const base = selfSignedScript(owner, dnsNames, ips).split("\n");
  // Drop the fingerprint line: the PEM pair is the output.
  return [...base.slice(0, -1), `cat ${TLS_CERT} ${TLS_KEY}`].join("\n");
}

/** Splits the PEM pair given on stdin into the staging area, then installs it as givenScript does. */
export function sharedInstallScript(owner: string): string {
  return script(
    "umask 077",
    `pair=${STAGE_DIR}/tls-pair.pem`,
    'cat > "$pair"',
    `sed -n '/-BEGIN CERTIFICATE-/,/-END CERTIFICATE-/p' "$pair" > ${STAGE_DIR}/tls-cert.pem`,
    `sed -n '/-BEGIN [A-Z ]*PRIVATE KEY-/,/-END [A-Z ]*PRIVATE KEY-/p' "$pair" > ${STAGE_DIR}/tls-key.pem`,
    'rm -f "$pair"',
    `[ -s ${STAGE_DIR}/tls-cert.pem ] && [ -s ${STAGE_DIR}/tls-key.pem ] || { echo "mailinfra: no certificate and key came from the pair's first node" >&2; exit 1; }`,
    givenScript(owner, "shared").replace(/^set -eu\n/, ""),
  );
}

/** Installs the staged given pair (0600, owner) and checks that key and certificate match. */
export function givenScript(owner: string, source: TlsSource = "given"): string {
  return script(
    PUT_FUNCTION,
    `install -d -m 0750 -o root -g ${owner} ${TLS_DIR}`,
    `put ${STAGE_DIR}/tls-cert.pem ${TLS_CERT} 0600 ${owner}:${owner}`,
    `put ${STAGE_DIR}/tls-key.pem ${TLS_KEY} 0600 ${owner}:${owner}`,
    `[ "$(openssl x509 -in ${TLS_CERT} -noout -pubkey | sha256sum)" = "$(openssl pkey -in ${TLS_KEY} -pubout | sha256sum)" ] ||`,
    `  { echo "mailinfra: tlsPrivateKey does not belong to tlsCertificate" >&2; exit 1; }`,
    `rm -f ${TLS_DIR}/names`,
    `printf '%s' ${shq(source)} > ${TLS_SOURCE}`,
    `if [ "$changed" = 1 ]; then touch ${TLS_RESTART_MARKER}; fi`,
    `openssl x509 -in ${TLS_CERT} -noout -fingerprint -sha256`,
  );
}

export class Tls extends pulumi.ComponentResource {
  /** The certificate's SHA-256 fingerprint (changes when the certificate does). */
  readonly fingerprint: pulumi.Output<string>;
  readonly step: remote.Command;

  constructor(name: string, args: TlsArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mailinfra:tls:Tls", name, {}, opts);
    if (args.dnsNames.length === 0) throw new pulumi.ResourceError("at least one DNS name is needed", this);
    if (args.given === undefined) {
      const create = selfSignedScript(args.owner, args.dnsNames, args.ipAddresses);
      this.step = hostCommand(
        `${name}-selfsigned`,
        {
          connection: args.connection,
          create,
          delete: cleanupScript("self-signed"),
          triggers: [sha256(create)],
        },
        { parent: this, dependsOn: args.dependsOn },
      );
    } else {
      const cert = stageFile(
        `${name}-cert`,
        args.connection,
        { name: "tls-cert.pem", content: args.given.certificate },
        { parent: this, dependsOn: args.dependsOn },
      );
      const key = stageFile(
        `${name}-key`,
        args.connection,
        { name: "tls-key.pem", content: pulumi.secret(args.given.privateKey) },
        { parent: this, dependsOn: args.dependsOn },
      );
      this.step = hostCommand(
        `${name}-install`,
        {
          connection: args.connection,
          create: givenScript(args.owner),
          delete: cleanupScript("given"),
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

  constructor(name: string, args: SharedTlsArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mailinfra:tls:SharedTls", name, {}, opts);
    const [first, ...rest] = args.nodes;
    if (!first || rest.length === 0)
      throw new pulumi.ResourceError("a shared certificate needs 2+ nodes", this);
    if (args.dnsNames.length === 0) throw new pulumi.ResourceError("at least one DNS name is needed", this);
    const create = sharedSelfSignedScript(args.owner, args.dnsNames, args.ipAddresses);
    this.generate = hostCommand(
      `${name}-${first.name}-selfsigned`,
      {
        connection: first.connection,
        create,
        delete: cleanupScript("self-signed"),
        triggers: [sha256(create)],
      },
      {
        parent: this,
        dependsOn: first.dependsOn,
        additionalSecretOutputs: ["stdout"],
      },
    );
    const pair = pulumi.secret(this.generate.stdout);
    const certHash = pair.apply((p) => sha256(p.slice(0, p.indexOf("-----END CERTIFICATE-----"))));
    this.fingerprints[first.name] = certHash;
    for (const node of rest) {
      const install = hostCommand(
        `${name}-${node.name}-install`,
        {
          connection: node.connection,
          create: sharedInstallScript(args.owner),
          delete: cleanupScript("shared"),
          stdin: pair,
          triggers: [certHash, sha256(sharedInstallScript(args.owner))],
        },
        { parent: this, dependsOn: [this.generate, ...node.dependsOn] },
      );
      this.installs.push(install);
      this.fingerprints[node.name] = install.stdout;
    }
    this.registerOutputs({});
  }
}
