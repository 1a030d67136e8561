// Stack prod under the SDK's mocks: 11 hosts, every step on the host its role
// names, the order edges, the guarded SAN format, and no secret in the clear.
import { readFileSync } from "node:fs";
import { beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { BUILT_SERVICES } from "../../components/runtime-values.js";
import {
  ensureBundle,
  hostOf,
  type ProgramRun,
  REPO,
  runProgram,
  stackConfig,
  unwrapped,
} from "./harness.js";
import {
  commandOf,
  expectAfter,
  expectNoSecretInPlainInputs,
  expectSecretSources,
  expectShellSyntax,
  expectStrictShell,
  expectTypeTokens,
  expectUpdateInPlace,
  step,
  steps,
} from "./policy.js";

const { config, secretKeys } = stackConfig("prod");
/** A role's services as this runtime build has them (runtime/src/cli/services.ts decides). */
const built = (...services: string[]) =>
  services.filter((x) => (BUILT_SERVICES as ReadonlySet<string>).has(x)).sort();
const hosts = JSON.parse(config["mailinfra:hosts"]!) as { name: string; address: string; roles: string[] }[];
const byName = new Map(hosts.map((h) => [h.name, h]));
let run: ProgramRun;

beforeAll(async () => {
  await ensureBundle();
  run = await runProgram("prod", config, secretKeys);
}, 120_000);

/** The host a step belongs to: the one host name among its name's tokens. */
function ownerOf(name: string): string {
  const found = name.split("-").filter((t) => byName.has(t));
  if (found.length !== 1) throw new Error(`${name}: names ${found.length} hosts`);
  return found[0]!;
}

describe("stack prod", () => {
  it("registers without errors", () => {
    expect(run.errors).toEqual([]);
    expect(steps(run).length).toBeGreaterThan(90);
  });

  it("has the 11 hosts", () => {
    const hostComponents = run.resources.filter((r) => r.type === "mailinfra:host:Host").map((r) => r.name);
    expect(hostComponents.sort()).toEqual(hosts.map((h) => h.name).sort());
    expect(hostComponents).toHaveLength(11);
  });

  it("runs every step on the host its name and role give", () => {
    for (const r of steps(run)) {
      const owner = byName.get(ownerOf(r.name))!;
      expect(hostOf(r), r.name).toBe(owner.address);
      const roles = owner.roles;
      if (/-san-/.test(r.name) || r.name.startsWith("store-ha-")) expect(roles, r.name).toContain("store");
      if (r.name.startsWith("ldap-")) expect(roles, r.name).toContain("ldap");
      if (r.name.includes("statsdb")) expect(roles, r.name).toContain("test");
    }
  });

  it("installs each role's services, and only those", async () => {
    const units = (h: string) =>
      steps(run)
        .filter((r) => r.name.startsWith(`${h}-runtime-unit-`))
        .map((r) => r.name.slice(`${h}-runtime-unit-`.length))
        .sort();
    expect(units("mx1")).toEqual(["smtp"]);
    expect(units("relay2")).toEqual(["smtp"]);
    expect(units("store1")).toEqual(built("imap", "lmtp", "managesieve", "pop3"));
    expect(units("store2")).toEqual(built("imap", "lmtp", "managesieve", "pop3"));
    expect(units("webmail1")).toEqual(built("webmail"));
    expect(units("test1")).toEqual(built("stats"));
    // Heartbeat starts only the store services this build has.
    const asset = step(run, "store-ha-store1-haresources").inputs.source as { text: Promise<string> };
    const haresources = await asset.text;
    for (const s of ["lmtp", "imap", "pop3", "managesieve"])
      expect(haresources.includes(`mailinfra::${s}`), s).toBe(BUILT_SERVICES.has(s as "imap"));
    // The role services not in this build are named in the `services` output.
    const services = unwrapped(run.outputs.services) as Record<string, { notInThisBuild: string[] }>;
    expect(services.webmail1?.notInThisBuild).toEqual(built("webmail").length ? [] : ["webmail"]);
    // The statistics database belongs to the role, built or not.
    expect(step(run, "test1-statsdb-create").type).toBe("command:remote:Command");
    expect(units("ldap1")).toEqual([]);
    // LDAP hosts run slapd, no runtime: no bundle copied there.
    expect(run.resources.some((r) => r.name === "ldap1-bundle")).toBe(false);
    expect(step(run, "mx1-bundle").type).toBe("command:remote:CopyToRemote");
  });

  it("orders SAN format before mount, and the preferred node's format first", () => {
    expectAfter(run, "store1-san-mount", "store1-san-format");
    expectAfter(run, "store2-san-mount", "store2-san-format");
    expectAfter(run, "store2-san-format", "store1-san-format");
    expect(step(run, "store1-san-mount").dependsOn).toContain("store1-san-format");
  });

  it("guards the SAN format: blkid first, mkfs only on a blank device, never -f, only on one node", () => {
    const f1 = commandOf(step(run, "store1-san-format"));
    const f2 = commandOf(step(run, "store2-san-format"));
    expect(f1).toMatch(/blkid -p -o export "\$dev"/);
    expect(f1.indexOf("blkid -p")).toBeLessThan(f1.indexOf("mkfs.xfs"));
    // mkfs sits in the `2)` branch (blkid found nothing) and nowhere else.
    const blank = f1.slice(f1.indexOf("\n2)\n"), f1.indexOf("\n  ;;", f1.indexOf("\n2)\n")));
    expect(blank).toContain("mkfs.xfs -L 'mailstore'");
    expect(f1.split("mkfs.xfs").length).toBe(2);
    expect(f1).not.toMatch(/mkfs\S*\s[^\n]*\s-f\b/);
    expect(f2).not.toContain("mkfs");
    expect(step(run, "store1-san-format").inputs.delete).toBeUndefined();
    // Heartbeat owns the mount: fstab noauto, no mount command.
    const m = commandOf(step(run, "store1-san-mount"));
    expect(m).toContain("/dev/sdb /srv/mail xfs noatime,inode64,noauto 0 0");
    expect(m).not.toMatch(/\bmount "\$mp"/);
  });

  it("configures both Heartbeat nodes before either starts", () => {
    for (const n of ["store1", "store2"]) {
      expectAfter(run, `store-ha-${n}-start`, "store-ha-store1-configure");
      expectAfter(run, `store-ha-${n}-start`, "store-ha-store2-configure");
      expect(step(run, `store-ha-${n}-start`).dependsOn.sort()).toEqual([
        "store-ha-store1-configure",
        "store-ha-store2-configure",
      ]);
      // Each node's Heartbeat files after its SAN entry and its runtime units.
      expectAfter(run, `store-ha-${n}-ha-cf`, `${n}-san-mount`);
      expectAfter(run, `store-ha-${n}-ha-cf`, `${n}-runtime-install`);
    }
  });

  it("orders LDAP provider, base entries, replica; LDAP before every runtime", () => {
    expectAfter(run, "ldap-ldap1-base", "ldap-ldap1-configure");
    expectAfter(run, "ldap-ldap2-configure", "ldap-ldap1-base");
    const runtimes = hosts.filter((x) => run.resources.some((r) => r.name === `${x.name}-runtime-install`));
    expect(runtimes.length).toBeGreaterThanOrEqual(6);
    for (const h of runtimes)
      for (const l of ["ldap-ldap1-configure", "ldap-ldap1-base", "ldap-ldap2-configure"])
        expectAfter(run, `${h.name}-runtime-install`, l);
  });

  it("gives every host's services both LDAP URIs, replica first on MX and webmail, provider first elsewhere", async () => {
    const provider = "ldap://198.51.100.31/";
    const replica = "ldap://198.51.100.32/";
    const configs = run.resources.filter((r) => r.name.endsWith("-runtime-config"));
    // Every host that runs a runtime service of this build has its runtime.yaml.
    const services = unwrapped(run.outputs.services) as Record<string, { runs: string[] }>;
    expect(configs.map((r) => ownerOf(r.name)).sort()).toEqual(
      Object.keys(services)
        .filter((h) => services[h]!.runs.length > 0)
        .sort(),
    );
    for (const r of configs) {
      // The StringAsset as the program made it: its text is a promise of the rendered file.
      const text = await (unwrapped(r.inputs.source) as { text: Promise<string> }).text;
      const yaml = parse(text) as { ldap?: { uris?: string[] } };
      const roles = byName.get(ownerOf(r.name))!.roles;
      const replicaFirst = roles.some((x) => x === "mx" || x === "webmail");
      expect(yaml.ldap?.uris, r.name).toEqual(replicaFirst ? [replica, provider] : [provider, replica]);
    }
  });

  it("starts the store before MX, relays, webmail and statistics", () => {
    const later = ["mx1", "mx2", "relay1", "relay2", "webmail1", "webmail2", "test1"].filter((h) =>
      run.resources.some((r) => r.name === `${h}-runtime-install`),
    );
    expect(later).toEqual(expect.arrayContaining(["mx1", "mx2", "relay1", "relay2"]));
    for (const h of later)
      for (const n of ["store1", "store2"]) expectAfter(run, `${h}-runtime-install`, `store-ha-${n}-start`);
  });

  it("waits for SSH and installs the base before anything else on a host", () => {
    for (const r of steps(run)) {
      const c = unwrapped(r.inputs.connection) as { dialErrorLimit?: number; user?: string };
      expect(c.dialErrorLimit, r.name).toBeGreaterThanOrEqual(10);
      const owner = ownerOf(r.name);
      if (r.name !== `${owner}-base`) expectAfter(run, r.name, `${owner}-base`);
    }
    const base = commandOf(step(run, "store1-base"));
    expect(base).toMatch(/dpkg-query -W/);
    expect(base.indexOf("dpkg-query")).toBeLessThan(base.indexOf("apt-get install"));
    expect(base).toContain(
      "for p in ca-certificates heartbeat iproute2 kmod nodejs openssl psmisc xfsprogs; do",
    );
  });

  it("copies the bundle with a content-hash trigger", () => {
    const b = step(run, "store1-bundle");
    expect((b.inputs.triggers as string[])[0]).toMatch(/^[0-9a-f]{64}$/);
    expect(b.inputs.remotePath).toBe("/var/lib/mailinfra-deploy/mailinfra.mjs");
  });

  it("uses the given TLS certificate (prod never self-signs)", () => {
    expect(run.resources.filter((r) => r.name.endsWith("-tls-selfsigned"))).toEqual([]);
    expect(commandOf(step(run, "mx1-tls-install"))).toContain(
      "put /var/lib/mailinfra-deploy/tls-key.pem /etc/mailinfra/tls/key.pem 0600 mailinfra:mailinfra",
    );
  });

  it("never puts a secret in a command or a plain input", () => {
    expectNoSecretInPlainInputs(run, config);
    expectSecretSources(run, [
      "-authkeys",
      "-slapd-conf",
      "-admin-pw",
      "-base-ldif",
      "-passwords-ldif",
      "-ldap-bind",
      ...(BUILT_SERVICES.has("stats") ? ["-stats-database-url"] : []),
      "-tls-key",
    ]);
    expect(JSON.stringify(step(run, "test1-statsdb-create").inputs.stdin)).toContain(
      "4dabf18193072939515e22adb298388d",
    );
  });

  it("writes scripts that /bin/sh parses", async () => {
    await expectShellSyntax(run);
  });

  it("updates steps in place and sends no SSH environment", () => {
    expectUpdateInPlace(run);
  });

  it("uses mailinfra:<module>:<Type> tokens and strict shell", () => {
    expectTypeTokens(run);
    expectStrictShell(run);
  });

  it("every step that creates something can delete it", () => {
    const keep = ["-san-format", "-statsdb-create"];
    for (const r of run.resources.filter((x) => x.type === "command:remote:Command")) {
      if (keep.some((k) => r.name.endsWith(k))) continue;
      expect(typeof r.inputs.delete, `${r.name} has a delete`).toBe("string");
    }
  });

  it("exports the endpoints and the DNS zone fragment", () => {
    const endpoints = unwrapped(run.outputs.endpoints) as Record<string, unknown>;
    expect(endpoints).toMatchObject({
      mx: ["198.51.100.11:25", "198.51.100.12:25"],
      submission: ["198.51.100.13:587", "198.51.100.14:587"],
      imap: "198.51.100.20:143",
      pop3: "198.51.100.20:110",
      webmail: ["http://198.51.100.41/", "http://198.51.100.42/"],
      ldap: ["ldap://198.51.100.31/", "ldap://198.51.100.32/"],
    });
    const zone = String(unwrapped(run.outputs.dnsZone));
    const mx = zone.split("\n").filter((l) => / IN MX /.test(l));
    expect(mx).toHaveLength(4);
    expect(new Set(mx.map((l) => l.split(/\s+/)[3]))).toEqual(new Set(["10"]));
    expect(zone).toMatch(/^mx1\.example\.org\.\s+IN A 198\.51\.100\.11$/m);
    expect(zone).toMatch(/^imap\.example\.org\.\s+IN A 198\.51\.100\.20$/m);
    // Each mail domain: one MX per MX host, all of the same preference.
    for (const domain of ["example.org.", "alumni.example.org."])
      expect(
        mx
          .filter((l) => l.startsWith(`${domain} `))
          .map((l) => l.split(/\s+/).slice(3))
          .sort(),
      ).toEqual([
        ["10", "mx1.example.org."],
        ["10", "mx2.example.org."],
      ]);
    // Round robin: one name, an A record per relay and per webmail host.
    const a = (name: string) =>
      zone
        .split("\n")
        .filter((l) => new RegExp(`^${name.replaceAll(".", "\\.")}\\s+IN A `).test(l))
        .map((l) => l.split(/\s+/)[3])
        .sort();
    expect(a("mail.example.org.")).toEqual(["198.51.100.13", "198.51.100.14"]);
    expect(a("webmail.example.org.")).toEqual(["198.51.100.41", "198.51.100.42"]);
    expect(a("pop.example.org.")).toEqual(["198.51.100.20"]);
  });

  it("documents exactly these endpoints in the README's outputs section", () => {
    const readme = readFileSync(`${REPO}README.md`, "utf8");
    const section = readme.slice(
      readme.indexOf("<!-- section:outputs -->"),
      readme.indexOf("<!-- /section:outputs -->"),
    );
    const documented = [...section.matchAll(/^\| ([^|]+?)\s+\|/gm)]
      .flatMap((m) => [...m[1]!.matchAll(/`([a-z0-9]+)`/g)].map((k) => k[1]!))
      .sort();
    const endpoints = unwrapped(run.outputs.endpoints) as Record<string, unknown>;
    expect(documented).toEqual(Object.keys(endpoints).sort());
    for (const output of Object.keys(run.outputs).filter((k) => k !== "default"))
      expect(section, `output ${output}`).toContain(`pulumi stack output ${output}`);
  });
});
