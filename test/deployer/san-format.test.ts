// The SAN format step's script, run for real (blkid, mkfs.xfs, mount) against
// loop devices on sparse files: it formats only a blank device, leaves the
// expected XFS alone, and refuses anything else without changing it.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatScript } from "../../components/san.js";

const canRun =
  process.getuid?.() === 0 && (await execa("losetup", ["--version"], { reject: false })).exitCode === 0;
const devices: string[] = [];
let dir: string;

async function blankDevice(): Promise<string> {
  const file = join(dir, `lun-${devices.length}.img`);
  await execa("truncate", ["-s", "400M", file]);
  const { stdout } = await execa("losetup", ["-f", "--show", file]);
  devices.push(stdout.trim());
  return stdout.trim();
}

const probe = async (dev: string) =>
  (await execa("blkid", ["-p", "-o", "export", dev], { reject: false })).stdout;

/** Hash of the device's first and last 8 MiB: where any format or label would write. */
const digest = async (dev: string) =>
  (await execa("sh", ["-c", `{ head -c 8M "$1"; tail -c 8M "$1"; } | sha256sum`, "sh", dev])).stdout;

function run(dev: string, mayFormat: boolean, label = "mailstore") {
  const text = formatScript({
    device: dev,
    label,
    mkfsOptions: "",
    mayFormat,
    owner: { user: "mailinfra", uid: 2525 },
  });
  return execa("sh", ["-c", text], { reject: false });
}

describe.skipIf(!canRun)("SAN format guard (real blkid and mkfs.xfs on loop devices)", () => {
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "mailinfra-san-"));
  });
  afterAll(async () => {
    for (const d of devices) await execa("losetup", ["-d", d], { reject: false });
    await rm(dir, { recursive: true, force: true });
  });

  it("formats a blank device once, owned by the services' uid; a re-run leaves it as it is", async () => {
    const dev = await blankDevice();
    const first = await run(dev, true);
    expect(first.exitCode, first.stderr).toBe(0);
    expect(first.stdout).toContain("blank, formatting XFS labelled mailstore");
    const info = await probe(dev);
    expect(info).toMatch(/^TYPE=xfs$/m);
    expect(info).toMatch(/^LABEL=mailstore$/m);
    const mnt = await mkdtemp(join(dir, "mnt-"));
    await execa("mount", ["-t", "xfs", "-o", "ro", dev, mnt]);
    const { stdout: owner } = await execa("stat", ["-c", "%u %a", mnt]);
    await execa("umount", [mnt]);
    expect(owner).toBe("2525 750");

    const again = await run(dev, true);
    expect(again.exitCode).toBe(0);
    expect(again.stdout).toContain("XFS labelled mailstore, left as it is");
    expect(await probe(dev)).toBe(info); // same UUID: not reformatted
  });

  it("refuses a device holding another filesystem and changes nothing", async () => {
    const dev = await blankDevice();
    await execa("mkfs.ext4", ["-q", "-L", "precious", dev]);
    const before = await probe(dev);
    const r = await run(dev, true);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(
      /holds something else \(.*\bTYPE=ext4\b.*\), expected XFS labelled mailstore or a blank device; nothing was changed$/m,
    );
    expect(r.stderr).toContain("LABEL=precious");
    expect(await probe(dev)).toBe(before);
  });

  it("refuses a device holding a partition table and changes nothing", async () => {
    const dev = await blankDevice();
    // An MBR with one Linux partition (what fdisk would write), by hand.
    await execa("python3", [
      "-c",
      "import struct,sys\nm=bytearray(512)\nm[446:462]=bytes([0,32,33,0,0x83,254,255,255])+struct.pack('<II',2048,204800)\nm[440:444]=b'MIDS'\nm[510:512]=b'\\x55\\xaa'\nf=open(sys.argv[1],'r+b');f.write(m);f.close()",
      dev,
    ]);
    const before = await digest(dev);
    const r = await run(dev, true);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(
      /SAN \S+: holds something else \(.*\bPTTYPE=dos\b.*\), expected XFS labelled mailstore or a blank device; nothing was changed$/m,
    );
    expect(r.stdout).not.toContain("formatting");
    expect(await digest(dev)).toBe(before);
  });

  it("refuses XFS with another label", async () => {
    const dev = await blankDevice();
    await execa("mkfs.xfs", ["-q", "-L", "otherdata", dev]);
    const before = await digest(dev);
    const r = await run(dev, true);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/holds something else \(.*LABEL=otherdata.*\).*nothing was changed$/m);
    expect(await digest(dev)).toBe(before);
  });

  it("never formats on the node that may not (the second of the pair)", async () => {
    const dev = await blankDevice();
    const r = await run(dev, false);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain("blank: the other store node formats it first");
    expect(await probe(dev)).toBe("");
  });

  it("fails clearly when the device is missing", async () => {
    const r = await run(join(dir, "no-such-device"), true);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain("not a block device");
  });
});
