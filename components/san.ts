/**
 * `SanVolume`: the store's XFS volume on the SAN LUN, as seen by one store host.
 *
 * Formatting is guarded: mkfs.xfs runs only when `blkid -p` reports nothing on
 * the device, and only on the host allowed to format (one node of the pair, the
 * other checks after it). A device holding anything but XFS with the expected
 * label fails the deploy with a clear message and is left untouched. Never
 * `mkfs -f`. With Heartbeat the fstab entry is `noauto` (Heartbeat's Filesystem
 * agent mounts it on the active node only); without, it is mounted plainly.
 */
import type { remote } from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { type Connection, hostCommand, script, sha256, shq } from "./remote.js";

export interface SanVolumeArgs {
  connection: Connection;
  device: string;
  label: string;
  mkfsOptions: string;
  mountpoint: string;
  mountOptions: string;
  /** This host may format a blank device (exactly one host of a pair). */
  mayFormat: boolean;
  /** Heartbeat mounts the volume: fstab `noauto`, no mount here. */
  heartbeatOwnsMount: boolean;
  /** Owner of the filesystem's root after formatting (the services' user). */
  owner: { user: string; uid: number };
  dependsOn: pulumi.Input<pulumi.Resource>[];
}

/**
 * The guarded check-and-format script. Exit 0 only when the device holds XFS
 * with `label` (found, or just made from a blank device).
 */
export function formatScript(
  a: Pick<SanVolumeArgs, "device" | "label" | "mkfsOptions" | "mayFormat" | "owner">,
): string {
  const mkfs = ["mkfs.xfs", "-L", shq(a.label), ...a.mkfsOptions.split(/\s+/).filter(Boolean), '"$dev"'].join(
    " ",
  );
  return script(
    `dev=${shq(a.device)}`,
    `label=${shq(a.label)}`,
    'fail() { echo "mailinfra: $(uname -n): SAN $dev: $*" >&2; exit 1; }',
    '[ -b "$dev" ] || fail "not a block device"',
    // blkid -p probes the device itself (no cache): exit 0 = something found, 2 = nothing.
    'rc=0; info=$(blkid -p -o export "$dev" 2>&1) || rc=$?',
    'case "$rc" in',
    "0)",
    "  type=$(printf '%s\\n' \"$info\" | sed -n 's/^TYPE=//p')",
    "  have=$(printf '%s\\n' \"$info\" | sed -n 's/^LABEL=//p')",
    '  if [ "$type" = xfs ] && [ "$have" = "$label" ]; then echo "SAN $dev: XFS labelled $label, left as it is"; exit 0; fi',
    "  what=$(printf '%s\\n' \"$info\" | grep -E '^(TYPE|PTTYPE|LABEL|UUID)=' | paste -sd ' ' -)",
    '  fail "holds something else ($what), expected XFS labelled $label or a blank device; nothing was changed"',
    "  ;;",
    "2)",
    a.mayFormat
      ? [
          '  echo "SAN $dev: blank, formatting XFS labelled $label"',
          `  ${mkfs}`,
          // The root of the new filesystem belongs to the services' user (same uid on both nodes).
          "  tmp=$(mktemp -d)",
          '  mount -t xfs "$dev" "$tmp"',
          `  chown ${a.owner.uid}:${a.owner.uid} "$tmp"; chmod 0750 "$tmp"`,
          '  umount "$tmp"; rmdir "$tmp"',
        ].join("\n")
      : '  fail "blank: the other store node formats it first, and it has not"',
    "  ;;",
    '*) fail "blkid failed (exit $rc): $info" ;;',
    "esac",
  );
}

/** The fstab entry for the volume. */
export function fstabLine(
  a: Pick<SanVolumeArgs, "device" | "mountpoint" | "mountOptions" | "heartbeatOwnsMount">,
): string {
  const options = a.heartbeatOwnsMount ? `${a.mountOptions},noauto` : a.mountOptions;
  return `${a.device} ${a.mountpoint} xfs ${options} 0 0`;
}

/** Writes the fstab entry (replacing any for the mountpoint) and mounts when Heartbeat does not. */
export function mountScript(
  a: Omit<SanVolumeArgs, "connection" | "dependsOn" | "mayFormat" | "mkfsOptions">,
): string {
  const mp = shq(a.mountpoint);
  return script(
    `mp=${mp}`,
    // mkdir, not install -m: on the active node the mountpoint is the mounted volume's root.
    'mkdir -p "$mp"',
    "tmp=$(mktemp /etc/fstab.mailinfra.XXXXXX)",
    `awk -v mp="$mp" '$2 != mp' /etc/fstab > "$tmp"`,
    `echo ${shq(fstabLine(a))} >> "$tmp"`,
    'if cmp -s "$tmp" /etc/fstab; then rm -f "$tmp"; else chmod 0644 "$tmp"; mv -f "$tmp" /etc/fstab; echo "fstab updated"; fi',
    a.heartbeatOwnsMount
      ? 'echo "SAN: Heartbeat mounts $mp on the active node (fstab noauto)"'
      : [
          'if mountpoint -q "$mp"; then echo "SAN: $mp already mounted"; else mount "$mp"; fi',
          `[ "$(findmnt -n -o LABEL --target "$mp")" = ${shq(a.label)} ] || { echo "mailinfra: $mp is not the SAN volume labelled ${a.label}" >&2; exit 1; }`,
        ].join("\n"),
  );
}

export class SanVolume extends pulumi.ComponentResource {
  /** The guarded format (or check) step. */
  readonly format: remote.Command;
  /** fstab entry and, without Heartbeat, the mount. */
  readonly mount: remote.Command;

  constructor(name: string, args: SanVolumeArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mailinfra:san:SanVolume", name, {}, opts);
    if (args.mountpoint === "/" || !args.mountpoint.startsWith("/"))
      throw new pulumi.ResourceError(
        `mountpoint must be an absolute path other than /, got ${args.mountpoint}`,
        this,
      );
    const format = formatScript(args);
    this.format = hostCommand(
      `${name}-format`,
      // No delete: the volume holds the mail; removing the stack never erases it.
      { connection: args.connection, create: format, triggers: [sha256(format)] },
      { parent: this, dependsOn: args.dependsOn },
    );
    const mount = mountScript(args);
    const mp = shq(args.mountpoint);
    this.mount = hostCommand(
      `${name}-mount`,
      {
        connection: args.connection,
        create: mount,
        delete: script(
          args.heartbeatOwnsMount ? "" : `if mountpoint -q ${mp}; then umount ${mp}; fi`,
          `tmp=$(mktemp /etc/fstab.mailinfra.XXXXXX)`,
          `awk -v mp=${mp} '$2 != mp' /etc/fstab > "$tmp" && chmod 0644 "$tmp" && mv -f "$tmp" /etc/fstab`,
        ),
        triggers: [sha256(mount)],
      },
      { parent: this, dependsOn: [this.format] },
    );
    this.registerOutputs({});
  }
}
