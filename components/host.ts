/**
 * `Host`: one server reached over SSH. Waits for SSH, installs the Debian
 * packages its roles need (only the missing ones, so hosts without a package
 * mirror work when everything is present) and Debian's own `nodejs` for the
 * bundle (Debian 12's 18.20.4 is enough), checks the Node.js version, creates
 * the services' user and directories, and copies the runtime bundle in. As an
 * SSH user other than root, every step goes through `sudo -n` (remote.ts).
 */
import { readFileSync } from "node:fs";
import type { remote } from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import type { Role } from "./config.js";
import {
  type Connection,
  hostCommand,
  PUT_FUNCTION,
  STAGE_DIR,
  script,
  sha256,
  shq,
  stageAsset,
  stageDirLine,
} from "./remote.js";

/** Debian packages per role; `openssl` and `ca-certificates` everywhere (TLS). */
export const ROLE_PACKAGES: Record<Role, readonly string[]> = {
  mx: [],
  relay: [],
  store: ["xfsprogs", "heartbeat", "kmod", "psmisc", "iproute2"],
  ldap: ["slapd", "ldap-utils"],
  webmail: [],
  test: ["postgresql"],
};
export const BASE_PACKAGES = ["openssl", "ca-certificates"] as const;

/**
 * The lowest Node.js the runtime bundle runs on, from `engines.node` of
 * runtime/package.json, else of the root package.json (the form `>=X[.Y[.Z]]`).
 */
export function minimumNode(
  read: (path: string) => string = (p) => readFileSync(new URL(p, import.meta.url), "utf8"),
): { version: string; from: string } {
  for (const file of ["../runtime/package.json", "../package.json"]) {
    const engines = (JSON.parse(read(file)) as { engines?: { node?: unknown } }).engines;
    if (engines?.node === undefined) continue;
    const m = /^\s*>=\s*v?(\d+)(?:\.(\d+))?(?:\.(\d+))?\s*$/.exec(String(engines.node));
    if (!m)
      throw new Error(
        `${file.slice(3)}: engines.node ${JSON.stringify(engines.node)}: expected the form ">=X.Y.Z"`,
      );
    return { version: `${m[1]}.${m[2] ?? 0}.${m[3] ?? 0}`, from: file.slice(3) };
  }
  throw new Error("neither runtime/package.json nor package.json has engines.node");
}

/** Shell lines failing with a clear message unless `node` at `nodePath` is at least `min` (X.Y.Z). */
export function nodeCheckLines(nodePath: string, min: { version: string; from: string }): string {
  const [a, b, c] = min.version.split(".").map(Number) as [number, number, number];
  const test = `const [a,b,c]=process.versions.node.split(".").map(Number);process.exit(a!==${a}?(a>${a}?0:1):b!==${b}?(b>${b}?0:1):c>=${c}?0:1)`;
  return [
    `node=${shq(nodePath)}`,
    `[ -x "$node" ] || fail "Node.js >= ${min.version} (${min.from} engines.node) is needed at $node (runtime.nodePath): not found"`,
    `"$node" -e ${shq(test)} ||`,
    `  fail "Node.js >= ${min.version} (${min.from} engines.node) is needed at $node (runtime.nodePath), found $("$node" --version)"`,
  ].join("\n");
}

/** Where Debian's `nodejs` package (18.20.4 on Debian 12, enough for the bundle) puts node. */
export const DEBIAN_NODE = "/usr/bin/node";

/**
 * The Debian packages a host needs: its roles', and Debian's `nodejs` when it
 * runs the bundle with node at DEBIAN_NODE (a node elsewhere is the operator's).
 */
export function packagesFor(roles: readonly Role[], node?: string): string[] {
  const extra = node === DEBIAN_NODE ? ["nodejs"] : [];
  return [...new Set([...BASE_PACKAGES, ...roles.flatMap((r) => ROLE_PACKAGES[r]), ...extra])].sort();
}

/**
 * Installs those of `pkgs` dpkg does not report installed, and only those: a host
 * that has them all never asks apt (so hosts without a package mirror work).
 * Expects `fail` to be defined.
 */
export function packageLines(pkgs: readonly string[]): string {
  return [
    `missing=""`,
    `for p in ${pkgs.join(" ")}; do`,
    `  dpkg-query -W -f='\${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"`,
    "done",
    'if [ -n "$missing" ]; then',
    '  echo "installing:$missing"',
    "  apt-get update -q || fail 'apt-get update failed: no package mirror? install these packages by hand:'\"$missing\"",
    "  apt-get install -y -q --no-install-recommends $missing",
    "fi",
  ].join("\n");
}

export interface RuntimeUser {
  name: string;
  uid: number;
}

export interface HostArgs {
  connection: Connection;
  roles: readonly Role[];
  user: RuntimeUser;
  /** Install prefix of the bundle. */
  prefix: string;
  nodePath: string;
  /** The runtime bundle on this machine; omitted for hosts that run no runtime service. */
  bundlePath?: string;
  /** The lowest Node.js the bundle runs on; defaults to minimumNode() (package.json engines). */
  minimumNode?: { version: string; from: string };
}

/** The base script: packages, Node.js, user, directories. Pure, so tests read it. */
export function baseScript(
  args: Omit<HostArgs, "connection" | "bundlePath">,
  withRuntime: boolean,
  sshUser = "root",
): string {
  const pkgs = packagesFor(args.roles, withRuntime ? args.nodePath : undefined);
  const u = args.user;
  return script(
    "export DEBIAN_FRONTEND=noninteractive",
    'fail() { echo "mailinfra: $(uname -n): $*" >&2; exit 1; }',
    packageLines(pkgs),
    withRuntime && nodeCheckLines(args.nodePath, args.minimumNode ?? minimumNode()),
    `getent group ${u.name} >/dev/null || groupadd --system -g ${u.uid} ${u.name}`,
    `id -u ${u.name} >/dev/null 2>&1 || useradd --system -u ${u.uid} -g ${u.name} -d /var/lib/${u.name} -s /usr/sbin/nologin ${u.name}`,
    `[ "$(id -u ${u.name})" = ${u.uid} ] || fail "user ${u.name} has uid $(id -u ${u.name}), expected ${u.uid} (runtime.uid): the store pair must share it"`,
    stageDirLine(sshUser),
    `install -d -m 0755 -o root -g root ${shq(args.prefix)}`,
    `install -d -m 0750 -o root -g ${u.name} /etc/mailinfra /etc/mailinfra/maps`,
    `install -d -m 0750 -o ${u.name} -g ${u.name} /etc/mailinfra/secrets /var/lib/${u.name} /var/spool/${u.name}`,
    `echo "$(uname -n): base ready"`,
  );
}

/** Installs the staged bundle into the prefix when it differs; marks a restart. */
export function bundleInstallLines(prefix: string): string {
  return [
    PUT_FUNCTION,
    `put ${STAGE_DIR}/mailinfra.mjs ${shq(`${prefix}/mailinfra.mjs`)} 0755 root:root`,
    `if [ "$changed" = 1 ]; then touch ${STAGE_DIR}/restart-needed; echo "runtime bundle updated"; fi`,
  ].join("\n");
}

export class Host extends pulumi.ComponentResource {
  /** Ready for the other components: base done, bundle staged. */
  readonly ready: pulumi.Resource[];
  readonly base: remote.Command;
  readonly bundle?: remote.CopyToRemote;
  readonly bundleHash?: string;

  constructor(name: string, args: HostArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mailinfra:host:Host", name, {}, opts);
    const withRuntime = args.bundlePath !== undefined;
    const base = baseScript(args, withRuntime, args.connection.user);
    this.base = hostCommand(
      `${name}-base`,
      {
        connection: args.connection,
        create: base,
        // Packages and the user stay (other software may use them); what the deploy created goes.
        delete: script(`rm -rf ${STAGE_DIR} ${shq(args.prefix)} /etc/mailinfra`),
        triggers: [sha256(base)],
      },
      { parent: this },
    );
    this.ready = [this.base];
    if (args.bundlePath !== undefined) {
      let bundle: Buffer;
      try {
        bundle = readFileSync(args.bundlePath);
      } catch {
        throw new pulumi.ResourceError(
          `runtime bundle ${args.bundlePath} is missing: run \`npm run build\` first`,
          this,
        );
      }
      this.bundleHash = sha256(bundle);
      this.bundle = stageAsset(
        `${name}-bundle`,
        args.connection,
        { name: "mailinfra.mjs", source: new pulumi.asset.FileAsset(args.bundlePath), hash: this.bundleHash },
        { parent: this, dependsOn: [this.base] },
      );
      this.ready.push(this.bundle);
    }
    this.registerOutputs({});
  }
}
