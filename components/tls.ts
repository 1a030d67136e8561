/**
 * `Tls`: the certificate and key of a host's services, mode 0600, owned by the
 * services' user. Either given (the tlsCertificate/tlsPrivateKey secrets) or,
 * for lab and staging when none is given, generated self-signed ON the host with
 * openssl for the service names (host names, VIP names, addresses); regenerated
 * only when that list changes. A change marks the runtime for a restart.
 */
import type { remote } from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import {
  type Connection,
  hostCommand,
  PUT_FUNCTION,
  RESTART_MARKER,
  STAGE_DIR,
  STEP_TIMEOUTS,
  script,
  sha256,
  shq,
  stageFile,
} from "./remote.js";

export const TLS_DIR = "/etc/mailinfra/tls";
export const TLS_CERT = `${TLS_DIR}/cert.pem`;
export const TLS_KEY = `${TLS_DIR}/key.pem`;

export interface TlsArgs {
  connection: pulumi.Input<Connection>;
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
    `  touch ${RESTART_MARKER}`,
    "  echo 'self-signed certificate generated' >&2",
    "fi",
    `openssl x509 -in ${TLS_CERT} -noout -fingerprint -sha256`,
  );
}

/** Installs the staged given pair (0600, owner) and checks that key and certificate match. */
export function givenScript(owner: string): string {
  return script(
    PUT_FUNCTION,
    `install -d -m 0750 -o root -g ${owner} ${TLS_DIR}`,
    `put ${STAGE_DIR}/tls-cert.pem ${TLS_CERT} 0600 ${owner}:${owner}`,
    `put ${STAGE_DIR}/tls-key.pem ${TLS_KEY} 0600 ${owner}:${owner}`,
    `[ "$(openssl x509 -in ${TLS_CERT} -noout -pubkey | sha256sum)" = "$(openssl pkey -in ${TLS_KEY} -pubout | sha256sum)" ] ||`,
    `  { echo "mailinfra: tlsPrivateKey does not belong to tlsCertificate" >&2; exit 1; }`,
    `rm -f ${TLS_DIR}/names`,
    `if [ "$changed" = 1 ]; then touch ${RESTART_MARKER}; fi`,
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
    const cleanup = script(`rm -rf ${TLS_DIR}`);
    if (args.given === undefined) {
      const create = selfSignedScript(args.owner, args.dnsNames, args.ipAddresses);
      this.step = hostCommand(
        `${name}-selfsigned`,
        { connection: args.connection, create, delete: cleanup, triggers: [sha256(create)] },
        { parent: this, dependsOn: args.dependsOn, customTimeouts: STEP_TIMEOUTS },
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
          delete: cleanup,
          triggers: [cert.triggers, key.triggers],
        },
        { parent: this, dependsOn: [cert, key], customTimeouts: STEP_TIMEOUTS },
      );
    }
    this.fingerprint = this.step.stdout;
    this.registerOutputs({ fingerprint: this.fingerprint });
  }
}
