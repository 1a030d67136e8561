import { execFileSync, spawnSync } from "node:child_process";
import { cpSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  type HaCfParams,
  type HaresourcesParams,
  RenderError,
  renderAuthkeys,
  renderHaCf,
  renderHaresources,
  renderResourceScript,
} from "../../components/render/index.js";
import { FAKE, removeTempDirs, snapshotPath, tempDir } from "./fixtures.js";

afterAll(removeTempDirs);

const haCf: HaCfParams = {
  nodes: ["store1", "store2"],
  ucast: [
    { interface: "eth1", peer: "198.18.0.21" },
    { interface: "eth1", peer: "198.18.0.22" },
  ],
  serial: { device: "/dev/ttyS0", baud: 115200 },
  keepaliveSeconds: 1,
  warntimeSeconds: 3,
  deadtimeSeconds: 5,
  initdeadSeconds: 10,
  autoFailback: "off",
};

const haresources: HaresourcesParams = {
  nodes: ["store1", "store2"],
  preferredNode: "store1",
  vip: "198.18.0.20",
  prefix: 24,
  interface: "eth0",
  device: "/dev/sdb",
  mountpoint: "/srv/mail",
  mountOptions: "noatime,inode64",
};

/** ha.cf as directive → values, in file order (Heartbeat has no config checker). */
function directives(text: string): [string, string][] {
  return text
    .split("\n")
    .filter((l) => l.trim() !== "" && !l.startsWith("#"))
    .map((l) => {
      const [key, ...rest] = l.trim().split(/\s+/);
      return [key!, rest.join(" ")];
    });
}

describe("ha.cf", () => {
  it("matches the snapshot", async () => {
    await expect(renderHaCf(haCf)).toMatchFileSnapshot(snapshotPath("ha.cf"));
  });

  it("has every directive Heartbeat needs, with udpport before ucast and baud before serial", () => {
    const d = directives(renderHaCf({ ...haCf, udpport: 695 }));
    const keys = d.map(([k]) => k);
    expect(Object.fromEntries(d.filter(([k]) => !["ucast", "node"].includes(k)))).toEqual({
      logfacility: "local0",
      keepalive: "1",
      warntime: "3",
      deadtime: "5",
      initdead: "10",
      udpport: "695",
      baud: "115200",
      serial: "/dev/ttyS0",
      auto_failback: "off",
      crm: "off",
    });
    expect(d.filter(([k]) => k === "ucast").map(([, v]) => v)).toEqual([
      "eth1 198.18.0.21",
      "eth1 198.18.0.22",
    ]);
    expect(d.filter(([k]) => k === "node").map(([, v]) => v)).toEqual(["store1", "store2"]);
    expect(keys.indexOf("udpport")).toBeLessThan(keys.indexOf("ucast"));
    expect(keys.indexOf("baud")).toBeLessThan(keys.indexOf("serial"));
  });

  it("omits the serial link when none is configured", () => {
    const { serial: _, ...noSerial } = haCf;
    const keys = directives(renderHaCf(noSerial)).map(([k]) => k);
    expect(keys).not.toContain("serial");
    expect(keys).not.toContain("baud");
  });

  it.each([
    [{ nodes: ["store1"] }, "nodes: haresources mode needs exactly 2 nodes"],
    [{ nodes: ["store1", "store1"] }, "nodes: the two nodes have the same name"],
    [{ nodes: ["store1", "bad name"] }, "nodes[1]: not a valid node name"],
    [{ ucast: [{ interface: "eth1", peer: "198.18.0.300" }] }, "ucast[0].peer: expected an IPv4 address"],
    [{ ucast: [{ interface: "eth 1", peer: "198.18.0.3" }] }, "ucast[0].interface: not an interface name"],
    [{ ucast: [], serial: undefined }, "ucast: at least one ucast link"],
    [{ warntimeSeconds: 1 }, "warntimeSeconds: must exceed keepalive"],
    [{ deadtimeSeconds: 3 }, "deadtimeSeconds: must exceed warntime"],
    [{ initdeadSeconds: 9 }, "initdeadSeconds: must be at least twice deadtime (10)"],
    [{ keepaliveSeconds: 0.5 }, "keepaliveSeconds: expected a positive integer"],
    [{ udpport: 70000 }, "udpport: expected a port"],
    [{ serial: { device: "/dev/ttyS0", baud: 1200 as 9600 } }, "serial.baud: unsupported baud rate 1200"],
    [{ autoFailback: "maybe" as "on" }, "unhandled auto_failback value: maybe"],
  ])("rejects %j", (patch, message) => {
    const params = { ...haCf, ...patch } as HaCfParams;
    if ("serial" in patch && patch.serial === undefined) delete (params as { serial?: unknown }).serial;
    expect(() => renderHaCf(params)).toThrow(message);
  });
});

describe("authkeys", () => {
  it("matches the snapshot (fake secret)", async () => {
    await expect(renderAuthkeys({ secret: FAKE.heartbeatSecret })).toMatchFileSnapshot(
      snapshotPath("authkeys"),
    );
  });

  it("uses key 1 with sha1 and the secret", () => {
    const lines = renderAuthkeys({ secret: FAKE.heartbeatSecret })
      .split("\n")
      .filter((l) => l !== "" && !l.startsWith("#"));
    expect(lines).toEqual(["auth 1", `1 sha1 ${FAKE.heartbeatSecret}`]);
  });

  it.each(["short", "has a space in it 123", "new\nline-0123456789"])("rejects the secret %j", (secret) => {
    expect(() => renderAuthkeys({ secret })).toThrow(RenderError);
  });
});

describe("haresources", () => {
  it("matches the snapshot", async () => {
    await expect(renderHaresources(haresources)).toMatchFileSnapshot(snapshotPath("haresources"));
  });

  it("is one group: preferred node, VIP, SAN mount, then the services in order", () => {
    const lines = renderHaresources({ ...haresources, services: ["lmtp", "imap"] })
      .split("\n")
      .filter((l) => l !== "" && !l.startsWith("#"));
    expect(lines).toHaveLength(1);
    expect(lines[0]!.split(" ")).toEqual([
      "store1",
      "IPaddr2::198.18.0.20/24/eth0",
      "Filesystem::/dev/sdb::/srv/mail::xfs::noatime,inode64",
      "mailinfra::lmtp",
      "mailinfra::imap",
    ]);
  });

  it.each([
    [{ vip: "198.18.0" }, "vip: expected an IPv4 address"],
    [{ vip: "2001:db8::1" }, "vip: expected an IPv4 address"],
    [{ prefix: 33 }, "prefix: expected 1-32, got 33"],
    [{ prefix: 0 }, "prefix: expected 1-32, got 0"],
    [{ preferredNode: "store3" }, "preferredNode: store3 is not one of store1, store2"],
    [{ device: "/dev/sdb::x" }, "device: expected"],
    [{ device: "sdb" }, "device: expected"],
    [{ mountpoint: "/" }, "mountpoint: expected an absolute path other than /"],
    [{ mountOptions: "noatime nodiratime" }, "mountOptions: unexpected characters"],
    [{ services: [] }, "services: at least one service"],
    [{ services: ["smtp"] }, "services[0]: not a store service: smtp"],
    [{ services: ["imap", "imap"] }, "services: a service is listed twice"],
  ])("rejects %j", (patch, message) => {
    expect(() => renderHaresources({ ...haresources, ...patch } as HaresourcesParams)).toThrow(message);
  });
});

describe("resource.d/mailinfra", () => {
  const script = renderResourceScript();

  it("matches the snapshot", async () => {
    await expect(script).toMatchFileSnapshot(snapshotPath("resource.d-mailinfra"));
  });

  it("is valid POSIX sh (dash -n) and refuses unknown services and actions", () => {
    const dir = tempDir("hb");
    const path = join(dir, "mailinfra");
    writeFileSync(path, script, { mode: 0o755 });
    execFileSync("dash", ["-n", path]);
    for (const args of [["smtp", "start"], ["imap", "restart"], ["imap"]]) {
      const r = spawnSync(path, args, { encoding: "utf8" });
      expect(r.status).toBe(2);
      expect(r.stderr).toContain("usage:");
    }
  });

  it("is found and read by Heartbeat's own ResourceManager (status: not owned when the unit is not active)", () => {
    const dir = tempDir("hb-rm");
    writeFileSync(join(dir, "mailinfra"), script, { mode: 0o755 });
    // ResourceManager looks resources up in $HA_RESOURCEDIR, calls `<script> <args> status`
    // and returns 0 (owned) or 3. No mailinfra-imap.service runs on this machine.
    const env = { ...process.env, HA_RESOURCEDIR: dir };
    const owned = spawnSync("/usr/share/heartbeat/ResourceManager", ["status", "mailinfra::imap"], { env });
    expect(owned.status).toBe(3);
    // Unknown service: the script refuses it, which ResourceManager also reads as not owned.
    const bad = spawnSync("/usr/share/heartbeat/ResourceManager", ["status", "mailinfra::smtp"], {
      env,
      encoding: "utf8",
    });
    expect(bad.status).toBe(3);
    expect(bad.stderr).toContain("usage:");
  });

  it("maps each service to its unit and prints what Heartbeat's ResourceManager matches", () => {
    expect(script).toContain('unit="mailinfra-$1.service"');
    expect(script).toContain("lmtp|imap|pop3|managesieve) ;;");
    // ResourceManager's we_own_resource: *[Rr]unning* → owned; "stopped" must not match it.
    expect(script).toMatch(/echo "running"/);
    expect(/[Rr]unning|OK/.test("stopped")).toBe(false);
  });
});

/**
 * Heartbeat has no config checker, but its daemon validates ha.cf, authkeys and
 * the haresources node names before it starts. Run the real daemon on the rendered
 * files inside fresh mount/UTS/network/PID namespaces: /etc/ha.d and its state
 * directories are private bind/tmpfs mounts, the host name is the node's, the
 * links run on the namespace's own loopback, and everything dies with the
 * namespace (its PID 1 is our shell) — nothing on this machine is touched.
 */
describe("the real heartbeat 3.0.6 daemon", () => {
  const daemon = "/usr/libexec/heartbeat/heartbeat";
  const canRun = process.getuid?.() === 0 && existsSync(daemon) && existsSync("/usr/bin/unshare");

  /** Starts heartbeat as `node` on the given files; returns its log once it is up or has refused. */
  function runHeartbeat(
    node: string,
    files: { haCf: string; authkeys: string; haresources: string },
  ): string {
    const dir = tempDir("hb-daemon");
    const etc = join(dir, "ha.d");
    cpSync("/etc/ha.d", etc, { recursive: true });
    const log = join(dir, "heartbeat.log");
    // The test's only addition: a log file (no syslog inside the namespace).
    writeFileSync(join(etc, "ha.cf"), `logfile ${log}\n${files.haCf}`);
    writeFileSync(join(etc, "authkeys"), files.authkeys, { mode: 0o600 });
    writeFileSync(join(etc, "haresources"), files.haresources);
    writeFileSync(join(etc, "resource.d", "mailinfra"), renderResourceScript(), { mode: 0o755 });
    const run = join(dir, "run.sh");
    writeFileSync(
      run,
      [
        "set -e",
        `mount --bind ${etc} /etc/ha.d`,
        "mount -t tmpfs tmpfs /var/lib/heartbeat",
        "mount -t tmpfs tmpfs /run",
        "mkdir -p /run/heartbeat /var/lib/heartbeat/cores/root /var/lib/heartbeat/cores/hacluster",
        `hostname ${node}`,
        "ip link set lo up",
        `${daemon} &`,
        // Up (a link is up) or refused, within 10 s; then the namespace ends.
        "for i in $(seq 100); do",
        `  grep -q -e "Link ${node}:lo up" -e "not started" ${log} 2>/dev/null && break`,
        "  sleep 0.1",
        "done",
      ].join("\n"),
    );
    const r = spawnSync("unshare", ["-m", "-u", "-n", "-p", "--fork", "--mount-proc", "sh", run], {
      encoding: "utf8",
      timeout: 30_000,
    });
    expect(r.status).toBe(0);
    return existsSync(log) ? readFileSync(log, "utf8") : "";
  }

  const loopback: HaCfParams = {
    nodes: ["store1", "store2"],
    ucast: [
      { interface: "lo", peer: "127.0.0.1" },
      { interface: "lo", peer: "127.0.0.2" },
    ],
  };
  const files = {
    haCf: renderHaCf(loopback),
    authkeys: renderAuthkeys({ secret: FAKE.heartbeatSecret }),
    haresources: renderHaresources({ ...haresources, interface: "lo" }),
  };

  it.runIf(canRun)("accepts the rendered ha.cf, authkeys and haresources and brings its links up", () => {
    const log = runHeartbeat("store1", files);
    expect(log).toContain("Configuration validated. Starting heartbeat 3.0.6");
    expect(log).toContain("ucast: started on port 694 interface lo to 127.0.0.2");
    expect(log).toContain("Link store1:lo up");
    expect(log).not.toMatch(/ERROR: (?!Cannot lock ourselves into memory)/);
    expect(log).not.toContain(FAKE.heartbeatSecret);
  });

  it.runIf(canRun)("refuses what it should (the check can fail)", () => {
    const badDirective = runHeartbeat("store1", { ...files, haCf: `${files.haCf}bogus_directive 1\n` });
    expect(badDirective).toContain("Illegal directive [bogus_directive]");
    expect(badDirective).toContain("heartbeat not started");
    const badKey = runHeartbeat("store1", { ...files, authkeys: "auth 1\n1 sha9 FAKE-heartbeat-secret\n" });
    expect(badKey).toContain("heartbeat not started");
    const notANode = runHeartbeat("store3", files);
    expect(notANode).toContain("Current node [store3] not in configuration");
    expect(notANode).not.toContain("Link store3:lo up");
  });
});
