/**
 * What every component shares about running steps on a host: the SSH
 * connection (typed once), the staging directory, content hashes, shell quoting
 * and the `put` shell function that installs a staged file only when it differs.
 *
 * Rendered files travel with `remote.CopyToRemote` into STAGE_DIR (mode 0700,
 * owned by the SSH user, so a secret file is never readable there by anyone
 * else whatever SFTP's mode); one `remote.Command` per component then installs
 * them with explicit modes and owners, and restarts what changed. Steps compare
 * content on the host, so a re-run with the same inputs changes nothing and
 * restarts nothing. Steps run as root: directly, or through `sudo -n` when the
 * SSH user is another (asRoot).
 */
import { createHash } from "node:crypto";
import { remote, type types } from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";

/**
 * The SSH connection, with the user as a plain string: a step knows statically
 * whether it runs as root or must go through `sudo -n` (see asRoot).
 */
export type Connection = Omit<types.input.remote.ConnectionArgs, "user"> & { user: string };

/** Root-only directory where files are staged before they are installed. */
export const STAGE_DIR = "/var/lib/mailinfra-deploy";

/** Marker: something every running service uses changed (the bundle); MailRuntime restarts them all. */
export const RESTART_MARKER = `${STAGE_DIR}/restart-needed`;

/** Marker: the certificate or key changed; MailRuntime restarts only the services that serve TLS. */
export const TLS_RESTART_MARKER = `${STAGE_DIR}/tls-changed`;

/** Every step waits this long for SSH (first boot, reboots). */
export const SSH_WAIT = { dialErrorLimit: 30, perDialTimeout: 15 } as const;
export const STEP_TIMEOUTS = { create: "15m", update: "15m", delete: "10m" };

export function sha256(text: string | Buffer): string {
  return createHash("sha256").update(text).digest("hex");
}

/** sha256 of a value that may be a secret; the hash is no secret, but Pulumi keeps it marked. */
export function hashOf(value: pulumi.Input<string>): pulumi.Output<string> {
  return pulumi.output(value).apply((v) => sha256(v));
}

/** Single-quoted for POSIX sh. */
export function shq(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

/**
 * `put SRC DST MODE OWNER:GROUP`: installs SRC as DST (atomically, parents
 * created) when the content differs and sets `changed=1`; always enforces the
 * mode and owner. `changed` starts at 0.
 */
export const PUT_FUNCTION = [
  "changed=0",
  "put() {",
  '  if ! cmp -s "$1" "$2"; then',
  // biome-ignore lint/suspicious/noTemplateCurlyInString: shell parameter expansion, not a template
  '    install -D -m "$3" -o "${4%%:*}" -g "${4##*:}" "$1" "$2.mailinfra-new"',
  '    mv -f "$2.mailinfra-new" "$2"',
  "    changed=1",
  "  fi",
  '  chmod "$3" "$2"',
  '  chown "$4" "$2"',
  "}",
].join("\n");

/** A script: `set -eu`, then the lines. */
export function script(...lines: (string | false | undefined)[]): string {
  return ["set -eu", ...lines.filter((l): l is string => typeof l === "string")].join("\n");
}

export interface StagedFile {
  /** File name inside STAGE_DIR. */
  name: string;
  content: pulumi.Input<string>;
}

/**
 * Copies `file` into STAGE_DIR; re-copied when its content hash changes.
 * A secret content stays secret (the asset is an Output of it).
 */
export function stageFile(
  resourceName: string,
  connection: Connection,
  file: StagedFile,
  opts: pulumi.CustomResourceOptions,
): remote.CopyToRemote {
  const content = pulumi.output(file.content);
  return stageAsset(
    resourceName,
    connection,
    {
      name: file.name,
      source: content.apply((text) => new pulumi.asset.StringAsset(text)),
      hash: content.apply((text) => sha256(text)),
    },
    opts,
  );
}

/** Copies an asset (a rendered text, the bundle) into STAGE_DIR as `name`; re-copied when `hash` changes. */
export function stageAsset(
  resourceName: string,
  connection: Connection,
  file: { name: string; source: pulumi.Input<pulumi.asset.Asset>; hash: pulumi.Input<string> },
  opts: pulumi.CustomResourceOptions,
): remote.CopyToRemote {
  return new remote.CopyToRemote(
    resourceName,
    { connection, source: file.source, remotePath: `${STAGE_DIR}/${file.name}`, triggers: [file.hash] },
    { customTimeouts: STEP_TIMEOUTS, ...opts },
  );
}

/** The SSH connection to a host: its address, port, user and private key (secret). */
export function connectionFor(
  host: { address: string; ssh: { user: string; port: number; hostKey?: string | undefined } },
  privateKey: pulumi.Input<string>,
): Connection {
  const c: Connection = {
    host: host.address,
    port: host.ssh.port,
    user: host.ssh.user,
    privateKey: pulumi.secret(privateKey),
    ...SSH_WAIT,
  };
  if (host.ssh.hostKey !== undefined) c.hostKey = host.ssh.hostKey;
  return c;
}

/**
 * A script as the connection's user runs it. As root: the script itself. As any
 * other user (ops often log in as an admin with sudo): the same script run by
 * root through `sudo -n` (never a password prompt: a missing NOPASSWD rule fails
 * the step with a clear message). The script travels as an argument of `sh -c`
 * and holds no secret; a secret input stays on stdin, which sudo passes through.
 */
export function asRoot(user: string, text: string): string {
  if (user === "root") return text;
  return [
    "set -eu",
    'who="mailinfra: $(uname -n): SSH user $(id -un)"',
    'if [ "$(id -u)" != 0 ]; then',
    '  command -v sudo >/dev/null 2>&1 || { echo "$who is not root and sudo is not installed" >&2; exit 1; }',
    '  sudo -n true 2>/dev/null || { echo "$who needs passwordless sudo (sudo -n): add a NOPASSWD rule" >&2; exit 1; }',
    `  exec sudo -n -- sh -c ${shq(text)}`,
    "fi",
    `exec sh -c ${shq(text)}`,
  ].join("\n");
}

/**
 * STAGE_DIR belongs to the SSH user (mode 0700) so SFTP can write it; root reads
 * it through sudo. Files staged earlier by another SSH user (a host moved from
 * root to an admin user) change hands too, or SFTP could not overwrite them.
 */
export function stageDirLine(sshUser: string): string {
  return `install -d -m 0700 -o ${shq(sshUser)} -g root ${STAGE_DIR}\nchown -R ${shq(sshUser)} ${STAGE_DIR}`;
}

export interface StepArgs {
  connection: Connection;
  /** Idempotent script (`set -eu` …): also run on update, so a changed input never replaces the step. */
  create: string;
  /** Undoes what create made; runs only when the step is removed (never on an update). */
  delete?: string;
  triggers?: pulumi.Input<unknown>[];
  /** Secret input (SQL, LDIF): travels on stdin, never in the command line. */
  stdin?: pulumi.Input<string>;
}

/**
 * A `remote.Command` the way every component runs one:
 * - `update` = `create`: the scripts are idempotent, so a changed trigger or
 *   script re-runs them in place. Without it the command provider REPLACES the
 *   step, running the new create and then the old delete, which would undo it.
 * - `addPreviousOutputInEnv: false`: the provider otherwise sends the previous
 *   stdout/stderr as SSH environment requests, which Debian's sshd refuses
 *   (AcceptEnv LANG LC_*) and which fails the step.
 */
export function hostCommand(
  name: string,
  args: StepArgs,
  opts: pulumi.CustomResourceOptions,
): remote.Command {
  const create = asRoot(args.connection.user, args.create);
  return new remote.Command(
    name,
    {
      connection: args.connection,
      create,
      update: create,
      addPreviousOutputInEnv: false,
      ...(args.delete === undefined ? {} : { delete: asRoot(args.connection.user, args.delete) }),
      ...(args.triggers === undefined ? {} : { triggers: args.triggers }),
      ...(args.stdin === undefined ? {} : { stdin: args.stdin }),
    },
    { customTimeouts: STEP_TIMEOUTS, ...opts },
  );
}
