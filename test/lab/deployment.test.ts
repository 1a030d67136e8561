// The lab stack deployed by the project's own program (index.ts) into 11 fresh
// hosts, then checked as ops would: SSH, the SAN, the VIP, Heartbeat, LDAP
// replication, the runtime's services; and a re-apply that changes nothing.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import type { ApplyReport } from "../../lab/apply/applier.js";
import { REPORT_FILE } from "../../lab/apply/cli.js";
import { paths, REPO_ROOT } from "../../lab/paths.js";
import { HOST_NAMES, type HostName, SAN_DEVICE, SAN_HOSTS } from "../../lab/topology.js";
import { addr, lab, labLock, leftovers, sh, topology } from "./helpers.js";

const PROGRAM = join(REPO_ROOT, "index.ts");
const lastReport = () => JSON.parse(readFileSync(REPORT_FILE, "utf8")) as ApplyReport;

/** The store that holds the SAN mount (Heartbeat's active node). */
async function activeStore(): Promise<{ active: HostName; passive: HostName; mounts: string[] }> {
  const mounts = await Promise.all(
    SAN_HOSTS.map((h) => sh(h, `findmnt -n -S ${SAN_DEVICE} -o TARGET,FSTYPE || true`)),
  );
  const i = mounts.findIndex((m) => m !== "");
  const active = SAN_HOSTS[i] ?? SAN_HOSTS[0]!;
  return { active, passive: SAN_HOSTS.find((h) => h !== active)!, mounts };
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ""}`);
}

/** When each long-running service last started (a restart changes it). */
const STARTED =
  "systemctl show -p ActiveEnterTimestampMonotonic --value heartbeat slapd " +
  "$(systemctl list-units 'mailinfra-*' --plain --no-legend | awk '{print $1}') 2>/dev/null | paste -sd,";

/** The DNs in a directory server's database, read with slapcat (safe on a running mdb). */
async function ldapDns(h: HostName): Promise<string[]> {
  const out = await sh(h, "slapcat -f /etc/ldap/slapd.conf 2>/dev/null | grep '^dn:' | sort");
  return out.split("\n").filter(Boolean);
}

/** mailinfra-* units on a host: name → ActiveState. */
async function runtimeUnits(h: HostName): Promise<Map<string, string>> {
  const out = await sh(
    h,
    "systemctl list-units 'mailinfra-*' --all --plain --no-legend --no-pager | awk '{print $1, $3}'",
  );
  return new Map(
    out
      .split("\n")
      .filter(Boolean)
      .map((l) => l.split(" ") as [string, string]),
  );
}

describe.skipIf(!existsSync(PROGRAM)).sequential("the lab stack deployed by index.ts", () => {
  let deployOut = "";
  let deployMs = 0;

  let unlock: (() => void) | undefined;

  beforeAll(async () => {
    unlock = await labLock();
    const d = await lab(["down"]);
    expect(d.code, d.out).toBe(0);
    const t0 = Date.now();
    const r = await lab(["deploy"]);
    deployMs = Date.now() - t0;
    deployOut = r.out;
    console.log(`lab deploy from nothing: ${(deployMs / 1000).toFixed(1)} s`);
    expect(r.code, r.out).toBe(0);
  });

  afterAll(async () => {
    const r = await lab(["down"]);
    if (r.code !== 0) console.error(r.out);
    unlock?.();
    expect(leftovers()).toEqual([]);
  });

  it("applies every step and says how to reach the system", () => {
    const report = lastReport();
    expect(report.failed).toEqual([]);
    expect(report.skipped).toEqual([]);
    expect(report.programErrors).toEqual([]);
    expect(report.done).toBe(report.total);
    expect(deployOut).toContain("The lab is deployed");
    expect(deployOut).toContain(topology.vip);
  });

  it("every host answers SSH", async () => {
    const names = await Promise.all(HOST_NAMES.map((h) => sh(h, "hostname")));
    expect(names).toEqual([...HOST_NAMES]);
  });

  it("the SAN is XFS and mounted on the active store only", async () => {
    const { active, passive, mounts } = await activeStore();
    expect(mounts.filter((m) => m !== "")).toHaveLength(1);
    expect(mounts[SAN_HOSTS.indexOf(active)]).toMatch(/ xfs$/);
    expect(await sh(passive, `findmnt -n -S ${SAN_DEVICE} || echo none`)).toBe("none");
    for (const h of SAN_HOSTS) expect(await sh(h, `blkid -o value -s TYPE ${SAN_DEVICE}`)).toBe("xfs");
  });

  it("the VIP answers on the active store", async () => {
    const { active, passive } = await activeStore();
    expect(await sh(active, "ip -4 -o addr show dev host0")).toContain(`${topology.vip}/`);
    expect(await sh(passive, "ip -4 -o addr show dev host0")).not.toContain(`${topology.vip}/`);
    expect(await sh(topology.vip, "hostname")).toBe(active);
  });

  it("heartbeat runs on both stores", async () => {
    for (const h of SAN_HOSTS) expect(await sh(h, "systemctl is-active heartbeat")).toBe("active");
  });

  it("an entry added on the LDAP provider appears on the replica", async () => {
    const conf = await sh("ldap1", "cat /etc/ldap/slapd.conf");
    const suffix = /^suffix\s+"([^"]+)"/m.exec(conf)?.[1];
    const rootDn = /^rootdn\s+"([^"]+)"/m.exec(conf)?.[1];
    const secrets = JSON.parse(readFileSync(paths.secrets, "utf8")) as Record<string, string>;
    const pwKey = Object.keys(secrets).find((k) => /ldap.*(admin|root|manager)|(admin|root).*ldap/i.test(k));
    expect(
      suffix && rootDn && pwKey,
      `suffix ${suffix}, rootdn ${rootDn}, secret keys ${Object.keys(secrets)}`,
    ).toBeTruthy();
    const cn = `lab-probe-${Date.now()}`;
    const ldif = `dn: cn=${cn},${suffix}\nobjectClass: organizationalRole\ncn: ${cn}\n`;
    const pw = secrets[pwKey!]!;
    // The password travels on stdin into a 0600 file, never on a command line.
    await sh("ldap1", "umask 077; cat > /run/lab-probe.pw", pw);
    await sh(
      "ldap1",
      `ldapadd -x -H ldap://${addr("ldap1")} -D '${rootDn}' -y /run/lab-probe.pw; rc=$?; rm -f /run/lab-probe.pw; exit $rc`,
      ldif,
    );
    const t0 = Date.now();
    // Read the replica's own database (slapcat: no bind, no ACL in the way).
    await waitFor(
      "the entry on the replica",
      async () => ((await ldapDns("ldap2")).includes(`dn: cn=${cn},${suffix}`) ? true : undefined),
      15_000,
    );
    console.log(`LDAP replication: ${Date.now() - t0} ms`);
  });

  it("each host's runtime services are running and healthy for its roles", async () => {
    const { passive } = await activeStore();
    for (const h of HOST_NAMES) {
      const units = await runtimeUnits(h);
      for (const [unit, state] of units) {
        // Heartbeat runs the store's services on the active node only.
        const expected = h === passive ? ["active", "inactive"] : ["active"];
        expect(expected, `${h} ${unit}`).toContain(state);
      }
      const yamlText = await sh(h, "cat /etc/mailinfra/runtime.yaml 2>/dev/null || true");
      const listen = (parse(yamlText || "{}") as { metrics?: { listen?: string } } | null)?.metrics?.listen;
      if (listen && units.size && h !== passive) {
        const port = listen.split(":").pop();
        expect(await sh(h, `curl -fsS --max-time 5 http://127.0.0.1:${port}/healthz`), `${h} /healthz`).toBe(
          "ok",
        );
      }
    }
  });

  it("a re-apply changes nothing: no reformat, no duplicate entry, no restart", async () => {
    const { active } = await activeStore();
    const before = {
      uuid: await sh(active, `blkid -o value -s UUID ${SAN_DEVICE}`),
      started: await Promise.all(HOST_NAMES.map((h) => sh(h, STARTED))),
      entries: await Promise.all(["ldap1", "ldap2"].map((h) => ldapDns(h as HostName))),
    };
    const t0 = Date.now();
    const r = await lab(["apply"]);
    console.log(`lab no-op re-apply: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    expect(r.code, r.out).toBe(0);
    expect(await sh(active, `blkid -o value -s UUID ${SAN_DEVICE}`)).toBe(before.uuid);
    const after = await Promise.all(HOST_NAMES.map((h) => sh(h, STARTED)));
    expect(after).toEqual(before.started);
    expect((await activeStore()).active).toBe(active);
    // No entry added twice (a duplicate would fail ldapadd, or show up as a second DN).
    const entries = await Promise.all(["ldap1", "ldap2"].map((h) => ldapDns(h as HostName)));
    expect(entries).toEqual(before.entries);
    for (const list of entries) expect(new Set(list).size).toBe(list.length);
  });
});
