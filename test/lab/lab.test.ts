// The lab end to end: 11 real hosts booted with systemd-nspawn, the applier
// carrying out a Pulumi program over SSH, power cuts, and a teardown that leaves
// nothing. When the deployer's index.ts is there, the lab stack is applied and
// the running system checked (see deployment.test.ts).
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ApplyReport } from "../../lab/apply/applier.js";
import { REPORT_FILE } from "../../lab/apply/cli.js";
import { runCommand } from "../../lab/apply/provider.js";
import { cgroupDirs } from "../../lab/guests.js";
import { down } from "../../lab/lab.js";
import { paths, REPO_ROOT } from "../../lab/paths.js";
import { connect } from "../../lab/ssh.js";
import { BRIDGE, HOST_NAMES, SAN_HOSTS } from "../../lab/topology.js";
import { addr, lab, labLock, leftovers, sh, shCode } from "./helpers.js";

const fixture = (f: string) => join(REPO_ROOT, "test/lab/fixtures", f);
const applyFixture = (stack: string) =>
  lab(["apply", "--program", fixture("program/index.ts"), "--stack-file", fixture(stack)]);
const lastReport = () => JSON.parse(readFileSync(REPORT_FILE, "utf8")) as ApplyReport;

// A guest process that survives SIGKILL, as one stuck in the kernel would: frozen
// by the cgroup-v1 freezer (a frozen task dies only once thawed). Hybrid layout only.
const FREEZER = "/sys/fs/cgroup/freezer";
describe.runIf(existsSync(`${FREEZER}/cgroup.procs`))("down with a guest it cannot stop", () => {
  it("refuses to tear anything down while a guest process still runs, and names it", async () => {
    const unlock = await labLock();
    const frozen = `${FREEZER}/mailinfra-lab-test`;
    const cgroup = cgroupDirs("mx1")[0]!;
    const child = spawn("sleep", ["600"], { stdio: "ignore" });
    const exited = new Promise((r) => child.once("exit", r));
    try {
      await down(() => undefined);
      // Something `down` would remove, and a "guest" process in mx1's cgroup.
      execFileSync("ip", ["link", "add", BRIDGE, "type", "bridge"]);
      mkdirSync(cgroup, { recursive: true });
      mkdirSync(frozen, { recursive: true });
      writeFileSync(`${cgroup}/cgroup.procs`, String(child.pid));
      writeFileSync(`${frozen}/cgroup.procs`, String(child.pid));
      writeFileSync(`${frozen}/freezer.state`, "FROZEN");
      await expect(down(() => undefined, { graceMs: 0 })).rejects.toThrow(
        `refusing to tear down: guests still running: mx1 (pids ${child.pid})`,
      );
      expect(existsSync(`/sys/class/net/${BRIDGE}`)).toBe(true);
      expect(existsSync(cgroup)).toBe(true);
    } finally {
      if (existsSync(frozen)) writeFileSync(`${frozen}/freezer.state`, "THAWED");
      child.kill("SIGKILL");
      await exited;
      if (existsSync(frozen)) rmdirSync(frozen);
      await down(() => undefined);
      unlock();
    }
    expect(leftovers()).toEqual([]);
  });
});

describe.sequential("the lab", () => {
  let upOutput = "";

  let unlock: (() => void) | undefined;

  beforeAll(async () => {
    unlock = await labLock();
    // What a crashed run could leave: the bridge, the SAN's loop device, a guest's mount.
    const down = await lab(["down"]);
    expect(down.code, down.out).toBe(0);
    execFileSync("ip", ["link", "add", BRIDGE, "type", "bridge"]);
    mkdirSync(paths.state, { recursive: true, mode: 0o700 });
    execFileSync("truncate", ["--size", "1M", paths.san]);
    execFileSync("losetup", ["--find", paths.san]);
    mkdirSync(paths.root("mx1"), { recursive: true });
    execFileSync("mount", ["-t", "tmpfs", "stale", paths.root("mx1")]);
    expect(leftovers().length).toBeGreaterThanOrEqual(4);

    const up = await lab(["up"]);
    upOutput = up.out;
    expect(up.code, up.out).toBe(0);
  });

  afterAll(async () => {
    // Always tear down, even when a test failed.
    const r = await lab(["down"]);
    if (r.code !== 0) console.error(r.out);
    unlock?.();
  });

  it("up cleared what a crashed run left, then booted all 11 hosts", async () => {
    expect(upOutput).toMatch(/removed: .*mount .*loop .*bridge/);
    const status = await lab(["status"]);
    for (const h of HOST_NAMES)
      expect(status.out).toMatch(new RegExp(`^${h}\\s+\\S+\\s+running .* ssh ok$`, "m"));
    // One SAN loop device, not the stale one plus a new one.
    expect(leftovers().filter((l) => l.startsWith("loop"))).toHaveLength(1);
  });

  it("every host answers SSH as itself, with its own address, machine id and host key", async () => {
    const seen = await Promise.all(
      HOST_NAMES.map(async (h) => {
        const out = await sh(h, "hostname; cat /etc/machine-id; ip -4 -br addr show host0; cat /proc/1/comm");
        const [name, machineId, ip, init] = out.split("\n");
        expect(name).toBe(h);
        expect(ip).toContain(`${addr(h)}/24`);
        expect(init).toBe("systemd");
        return machineId;
      }),
    );
    expect(new Set(seen).size).toBe(HOST_NAMES.length);
    const keys = readFileSync(paths.knownHosts, "utf8").trim().split("\n");
    expect(new Set(keys.map((k) => k.split(" ")[2])).size).toBe(HOST_NAMES.length);
    // The CLI's ssh checks the host key against the lab's known_hosts.
    const viaCli = await lab(["ssh", "relay2", "hostname"]);
    expect(viaCli.out.trim()).toContain("relay2");
  });

  it("hosts boot clean: the machine's services are off but installed, its private places hidden", async () => {
    const out = await sh(
      "ldap1",
      "systemctl is-active slapd heartbeat postfix dovecot postgresql clamav-daemon spamd || true; " +
        "systemctl is-active ssh; test -x /usr/sbin/slapd && test -x /usr/bin/node && echo installed; " +
        "test -e /usr/sbin/policy-rc.d || echo no-policy-rc; " +
        `test -e ${REPO_ROOT} || echo checkout-hidden; test -e ${paths.key} || echo key-hidden`,
    );
    const lines = out.split("\n");
    expect(lines.slice(0, 7)).toEqual(Array(7).fill("inactive"));
    expect(lines).toContain("active");
    expect(lines).toContain("installed");
    expect(lines).toContain("no-policy-rc");
    expect(lines).toContain("key-hidden");
    expect(lines).toContain("checkout-hidden"); // wherever the checkout lives (/work/main, /tmp/clone …)
    // Disabled, not removed: a service can still be enabled and started (slapd is SysV: enable, then restart).
    expect(
      await sh(
        "ldap2",
        "systemctl enable slapd 2>/dev/null && systemctl restart slapd && systemctl is-active slapd",
      ),
    ).toBe("active");
    // Hosts find each other by name.
    expect(await sh("mx1", "getent hosts store1 ldap2 | awk '{print $1}' | paste -sd' '")).toBe(
      `${addr("store1")} ${addr("ldap2")}`,
    );
  });

  it("the SAN is one blank block device seen as /dev/sdb by both store hosts and no other host", async () => {
    const nodes = await Promise.all(SAN_HOSTS.map((h) => sh(h, "stat -c '%t:%T %F' /dev/sdb")));
    expect(nodes[0]).toMatch(/^7:[0-9a-f]+ block special file$/);
    expect(nodes[1]).toBe(nodes[0]);
    // Blank: blkid finds nothing (exit 2).
    expect(await shCode("store1", "blkid -p /dev/sdb")).toBe(2);
    expect(await shCode("mx1", "test -e /dev/sdb")).toBe(1);
    // It is one volume: written on store1, read on store2.
    await sh("store1", "printf lab-san-probe | dd of=/dev/sdb bs=512 seek=100 conv=fsync status=none");
    expect(await sh("store2", "dd if=/dev/sdb bs=512 skip=100 count=1 status=none | tr -d '\\0'")).toBe(
      "lab-san-probe",
    );
    await sh("store1", "dd if=/dev/zero of=/dev/sdb bs=512 seek=100 count=1 conv=fsync status=none");
  });

  it("the applier mirrors the command provider: output trimmed once, exit status and output on failure", async () => {
    const connection = { host: addr("webmail1"), privateKey: readFileSync(paths.key, "utf8") };
    await expect(runCommand({ connection, create: "printf 'a\\n\\n'; printf 'e\\n' >&2" })).resolves.toEqual({
      stdout: "a\n",
      stderr: "e",
    });
    await expect(
      runCommand({ connection, create: 'cat; echo "$LANG"', stdin: "in\n", environment: { LANG: "C" } }),
    ).resolves.toEqual({
      stdout: "in\nC",
      stderr: "",
    });
    await expect(runCommand({ connection, create: "echo partial; exit 7" })).rejects.toThrow(
      'Process exited with status 7: running "echo partial; exit 7":\npartial\n',
    );
    await expect(
      runCommand({ connection, create: "touch /tmp/env-ran", environment: { LANG: "C", NOT_ACCEPTED: "1" } }),
    ).rejects.toThrow(/setenv failed.*NOT_ACCEPTED/);
    expect(await shCode("webmail1", "test -e /tmp/env-ran")).toBe(1);
  });

  it("applies a program: every step carried out in order, files copied, secrets on stdin; re-apply is clean", async () => {
    for (const run of [1, 2]) {
      const r = await applyFixture("Pulumi.fixture.yaml");
      expect(r.code, r.out).toBe(0);
      const report = lastReport();
      expect(report.ok).toBe(true);
      expect(report.done).toBe(10);
      expect(report.total).toBe(10);
      expect(r.out, `run ${run}`).toMatch(/apply: 10 of 10 steps done/);
    }
    for (const h of ["store1", "ldap1"] as const) {
      expect(await sh(h, "cat /etc/mailinfra-fixture/all.txt")).toBe("text asset\nfile asset\nleaf");
      expect(await sh(h, "stat -c %a /etc/mailinfra-fixture/token")).toBe("600");
      // As the provider's SFTP client: no mode sent, so the server's umask applies (not 0666).
      expect(
        await sh(h, "stat -c %a /etc/mailinfra-fixture/deep/a.txt /etc/mailinfra-fixture/tree/sub"),
      ).toBe("644\n755");
    }
    const token = (JSON.parse(readFileSync(paths.secrets, "utf8")) as Record<string, string>)[
      "mailinfra:fixtureToken"
    ];
    expect(token).toBeTruthy();
    expect(await sh("store1", "cat /etc/mailinfra-fixture/token")).toBe(token);
    // The secret reached the host only on stdin: not in the report, not in the output.
    expect(readFileSync(REPORT_FILE, "utf8")).not.toContain(token);
    expect(statSync(paths.secrets).mode & 0o777).toBe(0o600);
    expect(statSync(paths.state).mode & 0o777).toBe(0o700);
  });

  it("reports failed steps with host, command and output, and the steps skipped because of them", async () => {
    const r = await applyFixture("Pulumi.fixture-fail.yaml");
    expect(r.code).toBe(1);
    const report = lastReport();
    expect(report.ok).toBe(false);
    const failed = report.failed.map((s) => `${s.host} ${s.name}`).sort();
    expect(failed).toEqual([
      "198.18.0.21 198-18-0-21-bad",
      "198.18.0.21 198-18-0-21-refused-env",
      "198.18.0.31 198-18-0-31-bad",
      "198.18.0.31 198-18-0-31-refused-env",
    ]);
    const bad = report.failed.find((s) => s.name === "198-18-0-21-bad");
    expect(bad?.error).toBe(
      'Process exited with status 3: running "echo to-stdout; echo to-stderr >&2; exit 3":\nto-stdout\nto-stderr\n',
    );
    expect(report.skipped.map((s) => s.name).sort()).toEqual([
      "198-18-0-21-after-after",
      "198-18-0-21-after-bad",
      "198-18-0-31-after-after",
      "198-18-0-31-after-bad",
    ]);
    expect(report.done).toBe(10);
    expect(r.out).toMatch(/failed \(4\):\n {2}store1 {2}198-18-0-21-bad/);
    expect(r.out).toContain("skipped because something they depend on failed (4):");
    expect(await shCode("store1", "test -e /etc/mailinfra-fixture/refused-env-ran")).toBe(1);
    expect(await shCode("store1", "test -e /etc/mailinfra-fixture/after-bad")).toBe(1);
  });

  it("a power cut takes a host down at once; start boots it again with its disk and the SAN", async () => {
    await sh("store2", "echo before-the-cut > /var/lib/lab-marker && sync");
    const k = await lab(["kill", "store2"]);
    expect(k.code, k.out).toBe(0);
    await expect(
      connect({
        host: addr("store2"),
        privateKey: readFileSync(paths.key, "utf8"),
        dialErrorLimit: 0,
        perDialTimeout: 2,
      }),
    ).rejects.toThrow();
    expect((await lab(["status"])).out).toMatch(/^store2\s+\S+\s+stopped/m);
    const s = await lab(["start", "store2"]);
    expect(s.code, s.out).toBe(0);
    expect(await sh("store2", "cat /var/lib/lab-marker; stat -c %F /dev/sdb")).toBe(
      "before-the-cut\nblock special file",
    );
    // A guest's own reboot (nspawn exits 133) brings it back by itself.
    await labExecIgnoringDrop("store2", "systemctl reboot");
    await waitFor(async () => (await sh("store2", "cat /var/lib/lab-marker")) === "before-the-cut", 60_000);
  });

  it("down leaves nothing behind", async () => {
    const r = await lab(["down"]);
    expect(r.code, r.out).toBe(0);
    expect(leftovers()).toEqual([]);
    expect(existsSync(paths.key)).toBe(true); // the lab's key and secrets are kept for next time
  });
});

async function labExecIgnoringDrop(h: "store2", cmd: string): Promise<void> {
  try {
    await sh(h, cmd);
  } catch {
    // the connection drops as the host goes down
  }
}

async function waitFor(check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`timed out: ${String(last)}`);
}
