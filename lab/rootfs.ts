// Each guest's root: an overlay over the machine's own root filesystem, with an
// upper layer that makes it a distinct, clean host (NOTES-lab.md "Hosts").
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import {
  chmod,
  mkdir,
  readdir,
  readFile,
  readlink,
  rm,
  stat,
  symlink,
  unlink,
  writeFile,
} from "node:fs/promises";
import { join, relative } from "node:path";
import { run } from "./exec.js";
import { paths, STATE_DIR, WORKSPACE } from "./paths.js";
import {
  BRIDGE_ADDRESS,
  HOST_NAMES,
  type HostName,
  LAB_ADMIN,
  PREFIX_LENGTH,
  SAN_DEVICE,
  SAN_HOSTS,
  type Topology,
} from "./topology.js";

/** Units the machine's image has enabled that a guest keeps (everything else is disabled). */
const KEEP_UNIT = /^(ssh|sshd|dbus|rsyslog|syslog|getty@.*|getty|serial-getty@.*)(\.service|\.socket)?$/;

/**
 * Places hidden from the guests by opaque directories in the upper layer: the
 * machine's dotfiles, temporary files, and the workspace (which holds the lab's
 * own private key).
 */
export function opaqueDirs(): string[] {
  const dirs = ["/root", "/tmp", "/var/tmp", WORKSPACE];
  if (!relative(WORKSPACE, STATE_DIR).startsWith("..")) return dirs;
  return [...dirs, STATE_DIR];
}

export async function isMounted(path: string): Promise<boolean> {
  const info = await readFile("/proc/self/mountinfo", "utf8");
  return info.split("\n").some((l) => l.split(" ")[4] === path);
}

/** Creates the upper layer's opaque directories, with the lower layer's modes. */
async function makeOpaque(upper: string): Promise<void> {
  const created: string[] = [];
  for (const dir of opaqueDirs()) {
    // Parents exist in the upper layer as plain (merged) directories with the
    // machine's mode and owner, so the guest sees the same tree.
    const parts = dir.split("/").filter(Boolean);
    for (let i = 1; i <= parts.length; i++) {
      const lowerPath = `/${parts.slice(0, i).join("/")}`;
      const upperPath = join(upper, lowerPath);
      if (existsSync(upperPath)) continue;
      const st = await stat(lowerPath).catch(() => undefined);
      await mkdir(upperPath);
      await chmod(upperPath, st ? st.mode & 0o7777 : 0o755);
    }
    created.push(join(upper, dir));
  }
  // Node has no setxattr: the machine's python3 (a lab prerequisite) sets it.
  await run("/usr/bin/python3", [
    "-c",
    "import os,sys\nfor p in sys.argv[1:]: os.setxattr(p, 'trusted.overlay.opaque', b'y')",
    ...created,
  ]);
}

export async function mountRoot(h: HostName): Promise<{ fresh: boolean }> {
  const root = paths.root(h);
  if (await isMounted(root)) return { fresh: false };
  const upper = paths.upper(h);
  const fresh = !existsSync(upper);
  await mkdir(upper, { recursive: true, mode: 0o755 });
  await mkdir(paths.work(h), { recursive: true, mode: 0o700 });
  await mkdir(root, { recursive: true, mode: 0o755 });
  if (fresh) await makeOpaque(upper);
  await run("mount", [
    "-t",
    "overlay",
    "overlay",
    "-o",
    `lowerdir=/,upperdir=${upper},workdir=${paths.work(h)}`,
    root,
  ]);
  return { fresh };
}

async function listLinks(dir: string): Promise<string[]> {
  return readdir(dir).catch(() => []);
}

/** Disables every unit the machine's image enables, except sshd, dbus, rsyslog and getty. */
async function disableUnits(root: string): Promise<string[]> {
  const disabled: string[] = [];
  const sys = join(root, "etc/systemd/system");
  for (const entry of await listLinks(sys)) {
    const full = join(sys, entry);
    if (entry.endsWith(".wants") || entry.endsWith(".requires")) {
      for (const unit of await listLinks(full)) {
        if (KEEP_UNIT.test(unit)) continue;
        await unlink(join(full, unit));
        disabled.push(unit);
      }
      continue;
    }
    // Aliases of disabled units (dbus-org.freedesktop.timesync1.service …).
    const target = await readlink(full).catch(() => undefined);
    if (target && entry.startsWith("dbus-org.") && !target.includes("dbus")) {
      await unlink(full);
    }
  }
  // SysV scripts (slapd on Debian 12): `update-rc.d X disable` turns S links into K links.
  for (const level of ["2", "3", "4", "5"]) {
    const dir = join(root, `etc/rc${level}.d`);
    for (const link of await listLinks(dir)) {
      const m = /^S\d\d(.+)$/.exec(link);
      if (!m?.[1] || KEEP_UNIT.test(m[1])) continue;
      const target = await readlink(join(dir, link));
      await unlink(join(dir, link));
      await symlink(target, join(dir, `K01${m[1]}`)).catch(() => undefined);
      disabled.push(`${m[1]} (rc${level}.d)`);
    }
  }
  return [...new Set(disabled)];
}

function hostsFile(t: Topology): string {
  const lines = [
    "127.0.0.1\tlocalhost",
    "::1\tlocalhost ip6-localhost ip6-loopback",
    `${BRIDGE_ADDRESS}\tlab-gw`,
  ];
  for (const h of HOST_NAMES) lines.push(`${t.addresses[h]}\t${h}.lab ${h}`);
  return `${lines.join("\n")}\n`;
}

const netUnit = (address: string) => `[Unit]
Description=mailinfra lab: static address on host0
DefaultDependencies=no
After=sys-subsystem-net-devices-host0.device
Before=network-pre.target network.target ssh.service
Wants=network-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/sbin/ip link set lo up
ExecStart=/usr/sbin/ip link set host0 up
ExecStart=/usr/sbin/ip address replace ${address}/${PREFIX_LENGTH} dev host0

[Install]
WantedBy=multi-user.target
`;

// Guests have no udev: the SAN LUN's node is made inside the guest, not bound
// from the machine (Heartbeat's Filesystem agent would unmount a bind-mounted node).
const sanUnit = (minor: number) => `[Unit]
Description=mailinfra lab: the shared SAN volume as ${SAN_DEVICE}
DefaultDependencies=no
Before=sysinit.target local-fs-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'rm -f ${SAN_DEVICE} && mknod -m 0660 ${SAN_DEVICE} b 7 ${minor} && chgrp disk ${SAN_DEVICE}'

[Install]
WantedBy=sysinit.target
`;

async function writeUnit(root: string, name: string, text: string, wantedBy: string): Promise<void> {
  const sys = join(root, "etc/systemd/system");
  await writeFile(join(sys, name), text);
  await mkdir(join(sys, `${wantedBy}.wants`), { recursive: true });
  const link = join(sys, `${wantedBy}.wants`, name);
  await rm(link, { force: true });
  await symlink(`/etc/systemd/system/${name}`, link);
}

export interface PreparedHost {
  hostKeyLine: string;
  disabled: string[];
}

/** Makes a freshly mounted root into host `h`. Only run on a fresh upper layer. */
export async function customizeRoot(
  h: HostName,
  t: Topology,
  authorizedKey: string,
  sanMinor: number | undefined,
): Promise<PreparedHost> {
  const root = paths.root(h);
  const etc = join(root, "etc");
  await writeFile(join(etc, "hostname"), `${h}\n`);
  await writeFile(join(etc, "hosts"), hostsFile(t));
  await writeFile(join(etc, "machine-id"), `${randomBytes(16).toString("hex")}\n`, { mode: 0o444 });
  await rm(join(etc, "resolv.conf"), { force: true });
  // No name servers: hosts resolve each other through /etc/hosts, and nothing leaves the lab.
  await writeFile(join(etc, "resolv.conf"), "# mailinfra lab: no DNS; names are in /etc/hosts\n");
  await writeFile(join(etc, "fstab"), "# mailinfra lab guest\n");
  await rm(join(root, "usr/sbin/policy-rc.d"), { force: true });
  const disabled = await disableUnits(root);

  // Own SSH host key (ed25519 only: fast to make) and the lab's key for root.
  for (const f of await readdir(join(etc, "ssh"))) {
    if (f.startsWith("ssh_host_")) await unlink(join(etc, "ssh", f));
  }
  const hostKey = join(etc, "ssh/ssh_host_ed25519_key");
  await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", `root@${h}`, "-f", hostKey]);
  await writeFile(
    join(etc, "ssh/sshd_config.d/mailinfra-lab.conf"),
    "HostKey /etc/ssh/ssh_host_ed25519_key\n",
  );
  const pub = (await readFile(`${hostKey}.pub`, "utf8")).trim().split(" ");
  await mkdir(join(root, "root/.ssh"), { recursive: true, mode: 0o700 });
  await writeFile(join(root, "root/.ssh/authorized_keys"), `${authorizedKey.trim()}\n`, { mode: 0o600 });

  await addAdminUser(root, authorizedKey);

  await writeUnit(root, "lab-host0-address.service", netUnit(t.addresses[h]), "multi-user.target");
  if (SAN_HOSTS.includes(h)) {
    if (sanMinor === undefined) throw new Error(`${h}: no SAN loop device`);
    await writeUnit(root, "lab-san-device.service", sanUnit(sanMinor), "sysinit.target");
  }
  return { hostKeyLine: `${h},${h}.lab,${t.addresses[h]} ${pub[0]} ${pub[1]}`, disabled };
}

/**
 * LAB_ADMIN: a user with the lab's key and passwordless sudo, as ops often log in
 * (the lab stack deploys one host through it, every step under `sudo -n`).
 */
async function addAdminUser(root: string, authorizedKey: string): Promise<void> {
  await run("useradd", ["--root", root, "--create-home", "--shell", "/bin/sh", LAB_ADMIN]);
  const ssh = `/home/${LAB_ADMIN}/.ssh`;
  await mkdir(join(root, ssh), { mode: 0o700 });
  await writeFile(join(root, ssh, "authorized_keys"), `${authorizedKey.trim()}\n`, { mode: 0o600 });
  await run("chroot", [root, "chown", "-R", `${LAB_ADMIN}:${LAB_ADMIN}`, ssh]);
  await writeFile(join(root, "etc/sudoers.d", LAB_ADMIN), `${LAB_ADMIN} ALL=(ALL:ALL) NOPASSWD: ALL\n`, {
    mode: 0o440,
  });
}

export async function unmountRoot(h: HostName): Promise<void> {
  const root = paths.root(h);
  if (await isMounted(root)) await run("umount", [root]);
}
