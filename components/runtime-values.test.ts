import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { SERVICES } from "../runtime/src/cli/services.js";
import { stackSettings } from "../test/deployer/harness.js";
import { deriveConfig, parseStackSettings, type StackConfig, type StackSecrets } from "./config.js";
import { RUNTIME_SERVICES, renderRuntimeYaml, renderSystemdUnit } from "./render/index.js";
import {
  BUILT_SERVICES,
  heartbeatManaged,
  ldapUrisFor,
  notInBuildOf,
  runtimeYamlParams,
  serviceAccounts,
  servicesOf,
  tlsNamesFor,
  unitParams,
} from "./runtime-values.js";

const noSecrets = { sshPrivateKeys: {} } as unknown as StackSecrets;
function stack(name: string): StackConfig {
  const { raw, secrets } = stackSettings(name);
  return deriveConfig(parseStackSettings(raw, name, secrets), name, noSecrets);
}
const host = (cfg: StackConfig, name: string) => cfg.hosts.find((h) => h.name === name)!;
const uris = { ldap1: "ldap://198.18.0.31/", ldap2: "ldap://198.18.0.32/" };

describe("runtime values per host", () => {
  const lab = stack("lab");

  it("orders LDAP URIs by role: MX and webmail read the replica first, store and relays the provider", () => {
    expect(ldapUrisFor(lab, host(lab, "mx1"), uris)).toEqual([uris.ldap2, uris.ldap1]);
    expect(ldapUrisFor(lab, host(lab, "webmail2"), uris)).toEqual([uris.ldap2, uris.ldap1]);
    expect(ldapUrisFor(lab, host(lab, "store1"), uris)).toEqual([uris.ldap1, uris.ldap2]);
    expect(ldapUrisFor(lab, host(lab, "relay1"), uris)).toEqual([uris.ldap1, uris.ldap2]);
  });

  it("sends LMTP to the VIP and reads the store on the SAN mountpoint", () => {
    const mx = runtimeYamlParams(lab, host(lab, "mx1"), uris, "cn=mx,ou=services,dc=lab,dc=example");
    expect(mx.queue?.lmtp).toEqual({ host: "198.18.0.20", port: 24 });
    expect(mx.smtp?.mx?.listen).toEqual(["0.0.0.0:25"]);
    expect(mx.store).toBeUndefined();
    const store = runtimeYamlParams(lab, host(lab, "store2"), uris, "cn=store,ou=services,dc=lab,dc=example");
    expect(store.store?.root).toBe("/srv/mail");
    expect(store.smtp).toBeUndefined();
    // Rendered as it will be once the runtime has webmail (every service built).
    const web = runtimeYamlParams(
      lab,
      host(lab, "webmail1"),
      uris,
      "cn=webmail,ou=services,dc=lab,dc=example",
      new Set(RUNTIME_SERVICES),
    );
    expect(web.webmail).toEqual({ listen: ["0.0.0.0:80"], imapHost: "198.18.0.20", imapPort: 143 });
    expect(web.metrics).toEqual({ services: { webmail: "0.0.0.0:9180" } });
  });

  it("renders a runtime.yaml the runtime's schema accepts for every host of every stack", () => {
    for (const name of ["prod", "staging", "lab"]) {
      const cfg = stack(name);
      const u = Object.fromEntries(
        cfg.hosts.filter((h) => h.roles.includes("ldap")).map((h) => [h.name, `ldap://${h.address}/`]),
      );
      for (const h of cfg.hosts.filter((x) => servicesOf(cfg, x).length > 0))
        expect(() =>
          renderRuntimeYaml(runtimeYamlParams(cfg, h, u, `cn=x,ou=services,${cfg.ldap.baseDn}`)),
        ).not.toThrow();
    }
  });

  it("on a host with MX and relay roles, port 25 is served once", () => {
    const staging = stack("staging");
    const p = runtimeYamlParams(
      staging,
      staging.hosts[0]!,
      { test1: "ldap://192.0.2.51/" },
      "cn=store,ou=services,dc=x",
    );
    expect(p.smtp?.mx?.listen).toEqual(["0.0.0.0:25"]);
    expect(p.smtp?.relay?.listen).toEqual([]);
    expect(p.smtp?.relay?.submissionListen).toEqual(["0.0.0.0:587"]);
  });

  it("lets Heartbeat own the store services with HA, systemd without", () => {
    expect(heartbeatManaged(lab, host(lab, "store1"), "imap")).toBe(true);
    expect(unitParams(lab, host(lab, "store1"), "imap")).toMatchObject({
      enableAtBoot: false,
      requireMountPoint: "/srv/mail",
    });
    expect(unitParams(lab, host(lab, "mx1"), "smtp").enableAtBoot).toBe(true);
    const staging = stack("staging");
    expect(heartbeatManaged(staging, staging.hosts[0]!, "imap")).toBe(false);
    expect(unitParams(staging, staging.hosts[0]!, "imap").enableAtBoot).toBe(true);
  });

  it("runs only the role services this runtime build has; lists the others", () => {
    // The runtime's own `serve` table decides (runtime/src/cli/services.ts).
    const built = new Set(Object.keys(SERVICES));
    expect([...BUILT_SERVICES].sort()).toEqual([...built].sort());
    for (const h of lab.hosts) {
      const all = [...servicesOf(lab, h), ...notInBuildOf(lab, h)].sort();
      expect(
        servicesOf(lab, h).every((s) => built.has(s)),
        h.name,
      ).toBe(true);
      expect(
        notInBuildOf(lab, h).some((s) => built.has(s)),
        h.name,
      ).toBe(false);
      expect(all, h.name).toEqual(servicesOf(lab, h, new Set(RUNTIME_SERVICES)).sort());
    }
    // With a build that has everything, each role gets all of its services.
    expect(servicesOf(lab, host(lab, "store1"), new Set(RUNTIME_SERVICES))).toEqual([
      "lmtp",
      "imap",
      "pop3",
      "managesieve",
    ]);
    expect(servicesOf(lab, host(lab, "store1"), new Set(["imap", "lmtp"] as const))).toEqual([
      "lmtp",
      "imap",
    ]);
  });

  it("gives each service its own metrics port, and store and SMTP services a larger libuv pool", () => {
    const store = runtimeYamlParams(lab, host(lab, "store1"), uris, "cn=store,ou=services,dc=lab,dc=example");
    const ports = Object.values(store.metrics?.services ?? {});
    expect(Object.keys(store.metrics?.services ?? {}).sort()).toEqual(
      servicesOf(lab, host(lab, "store1")).sort(),
    );
    expect(new Set(ports).size).toBe(ports.length);
    expect(unitParams(lab, host(lab, "store1"), "imap").environment).toEqual({ UV_THREADPOOL_SIZE: "64" });
    expect(unitParams(lab, host(lab, "store1"), "lmtp").environment).toEqual({ UV_THREADPOOL_SIZE: "64" });
    expect(unitParams(lab, host(lab, "store1"), "pop3").environment).toEqual({ UV_THREADPOOL_SIZE: "64" });
    expect(unitParams(lab, host(lab, "mx1"), "smtp").environment).toEqual({ UV_THREADPOOL_SIZE: "32" });
  });

  it("renders units (with their environment) that systemd-analyze verify accepts", () => {
    const dir = mkdtempSync(join(tmpdir(), "mailinfra-units-"));
    try {
      for (const [h, service] of [
        ["store1", "imap"],
        ["mx1", "smtp"],
      ] as const) {
        // verify checks that ExecStart's binary exists: use this machine's node.
        const p = { ...unitParams(lab, host(lab, h), service), nodePath: process.execPath };
        const text = renderSystemdUnit(p);
        expect(text).toMatch(/^Environment="UV_THREADPOOL_SIZE=(64|32)"$/m);
        const file = join(dir, `mailinfra-${service}.service`);
        writeFileSync(file, text);
        const r = spawnSync("systemd-analyze", ["verify", "--man=no", file], { encoding: "utf8" });
        expect(`${r.stdout}${r.stderr}`.trim(), `${h} ${service}`).toBe("");
        expect(r.status).toBe(0);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("names one read-only service account per role that runs services", () => {
    expect(serviceAccounts(lab)).toEqual(["mx", "relay", "store", "test", "webmail"]);
  });

  it("covers the service names and the VIP in the store's certificate", () => {
    expect(tlsNamesFor(lab, host(lab, "store1"))).toEqual({
      dns: ["store1.lab.example", "store1", "imap.lab.example", "pop.lab.example"],
      ips: ["198.18.0.21", "198.18.0.20"],
    });
  });
});
