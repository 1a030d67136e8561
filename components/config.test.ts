import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { HOST_NAMES } from "../lab/topology.js";
import { stackSettings } from "../test/deployer/harness.js";
import {
  checkRules,
  keyPath,
  parseStackSettings,
  requiredSecretKeys,
  SECRET_KEYS,
  StackConfigError,
  StackConfigSchema,
  type StackSettings,
  sameSubnet,
} from "./config.js";

type Raw = Record<string, unknown>;
const clone = <T>(v: T): T => structuredClone(v);

/** The problems parseStackSettings reports for a raw config (none → []). */
function problems(raw: Raw, stack = "lab", secrets?: Set<string>): string[] {
  const s = secrets ?? stackSettings(stack === "prod" ? "prod" : "lab").secrets;
  try {
    parseStackSettings(raw, stack, s);
    return [];
  } catch (e) {
    if (!(e instanceof StackConfigError)) throw e;
    return e.problems;
  }
}

function lab(): { raw: Raw; hosts: Raw[] } {
  const raw = clone(stackSettings("lab").raw);
  return { raw, hosts: raw.hosts as Raw[] };
}

describe("the stack files", () => {
  it.each(["prod", "staging", "lab"])("%s is valid", (stack) => {
    const { raw, secrets } = stackSettings(stack);
    expect(problems(raw, stack, secrets)).toEqual([]);
  });

  it("prod has the 11 hosts of DESIGN.md, staging one host with every role", () => {
    const prod = parseStackSettings(stackSettings("prod").raw, "prod", stackSettings("prod").secrets);
    // DESIGN.md's 11 hosts, the same the lab boots.
    expect(prod.hosts.map((h) => h.name)).toEqual([...HOST_NAMES]);
    const staging = parseStackSettings(
      stackSettings("staging").raw,
      "staging",
      stackSettings("staging").secrets,
    );
    expect(staging.hosts).toHaveLength(1);
    expect([...staging.hosts[0]!.roles].sort()).toEqual(["ldap", "mx", "relay", "store", "test", "webmail"]);
  });

  it("applies the documented defaults", () => {
    const { raw } = lab();
    delete raw.runtime;
    const s = parseStackSettings(raw, "lab", stackSettings("lab").secrets);
    expect(s.runtime).toEqual({
      nodePath: "/usr/bin/node",
      prefix: "/opt/mailinfra",
      logLevel: "info",
      user: "mailinfra",
      uid: 2525,
    });
    expect(s.hosts[0]!.ssh).toEqual({ user: "root", port: 22, privateKeySecret: "sshPrivateKey" });
    expect(s.ldap.replicaFirstRoles).toEqual(["mx", "webmail"]);
  });
});

describe("key paths in messages", () => {
  it("formats namespace, keys and indexes", () => {
    expect(keyPath(["hosts", 3, "address"])).toBe("mailinfra:hosts[3].address");
    expect(keyPath(["ha", "vip"])).toBe("mailinfra:ha.vip");
  });

  it("names a bad host address", () => {
    const { raw, hosts } = lab();
    hosts[3]!.address = "198.18.0.300";
    expect(problems(raw)).toEqual(["mailinfra:hosts[3].address: expected an IPv4 address"]);
  });

  it("names a missing required key", () => {
    const { raw } = lab();
    delete (raw.ldap as Raw).baseDn;
    expect(problems(raw)).toEqual(["mailinfra:ldap.baseDn: required (expected string)"]);
  });

  it("names an unknown role", () => {
    const { raw, hosts } = lab();
    hosts[0]!.roles = ["mx", "smtp"];
    expect(problems(raw)).toEqual([
      "mailinfra:hosts[0].roles[1]: expected one of mx, relay, store, ldap, webmail, test",
    ]);
  });

  it("names a wrong type", () => {
    const { raw } = lab();
    (raw.ha as Raw).prefix = "24";
    expect(problems(raw)).toEqual(["mailinfra:ha.prefix: expected number"]);
  });

  it("rejects mkfs -f in the SAN options", () => {
    const { raw } = lab();
    (raw.san as Raw).mkfsOptions = "-m crc=1 -f";
    expect(problems(raw)).toEqual(["mailinfra:san.mkfsOptions: -f is never allowed"]);
  });

  it("lists every problem at once", () => {
    const { raw, hosts } = lab();
    hosts[1]!.address = "x";
    (raw.san as Raw).device = "sdb";
    expect(problems(raw)).toEqual([
      "mailinfra:hosts[1].address: expected an IPv4 address",
      "mailinfra:san.device: expected a /dev path",
    ]);
  });
});

describe("role rules", () => {
  it("exactly two store hosts when HA is on", () => {
    const { raw, hosts } = lab();
    hosts[10]!.roles = ["test", "store"];
    expect(problems(raw)).toEqual([
      "mailinfra:hosts: expected exactly two hosts with role store when ha.enabled is true, found 3",
    ]);
  });

  it("exactly one store host when HA is off", () => {
    const { raw } = lab();
    (raw.ha as Raw).enabled = false;
    expect(problems(raw)).toContain(
      "mailinfra:hosts: expected exactly one host with role store when ha.enabled is false, found 2",
    );
  });

  it("at least one MX", () => {
    const { raw, hosts } = lab();
    hosts[0]!.roles = ["relay"];
    hosts[1]!.roles = ["relay"];
    expect(problems(raw)).toEqual(["mailinfra:hosts: expected at least one host with role mx"]);
  });

  it("one LDAP provider, which must be an ldap host", () => {
    const { raw } = lab();
    (raw.ldap as Raw).provider = "mx1";
    expect(problems(raw)).toEqual(["mailinfra:ldap.provider: mx1 does not have the ldap role"]);
    (raw.ldap as Raw).provider = "nowhere";
    expect(problems(raw)).toEqual(["mailinfra:ldap.provider: no host is named nowhere"]);
    const noLdap = lab();
    for (const h of noLdap.hosts) if ((h.roles as string[]).includes("ldap")) h.roles = ["webmail"];
    delete (noLdap.raw.ldap as Raw).provider;
    expect(problems(noLdap.raw)).toEqual([
      "mailinfra:hosts: expected at least one host with role ldap (the LDAP provider)",
    ]);
  });

  it("the VIP inside the store hosts' subnet, and not a host's address", () => {
    const { raw } = lab();
    (raw.ha as Raw).vip = "198.18.1.20";
    expect(problems(raw)).toEqual([
      "mailinfra:ha.vip: 198.18.1.20/24 is not in the subnet of store1 (198.18.0.21)",
      "mailinfra:ha.vip: 198.18.1.20/24 is not in the subnet of store2 (198.18.0.22)",
    ]);
    (raw.ha as Raw).vip = "198.18.0.21";
    expect(problems(raw)).toEqual(["mailinfra:ha.vip: 198.18.0.21 is already the address of hosts[4]"]);
    delete (raw.ha as Raw).vip;
    expect(problems(raw)).toEqual([
      "mailinfra:ha.vip: required when ha.enabled is true (expected an IPv4 address)",
    ]);
  });

  it("no address or name used twice", () => {
    const { raw, hosts } = lab();
    hosts[5]!.address = "198.18.0.11";
    hosts[9]!.name = "mx2";
    expect(problems(raw)).toEqual([
      "mailinfra:hosts[5].address: 198.18.0.11 is already the address of hosts[0]",
      "mailinfra:hosts[9].name: mx2 is already the name of hosts[1]",
    ]);
  });

  it("every role present in prod", () => {
    const { raw, secrets } = stackSettings("prod");
    const r = clone(raw);
    (r.hosts as Raw[])[8]!.roles = ["relay"];
    (r.hosts as Raw[])[9]!.roles = ["relay"];
    expect(problems(r, "prod", secrets)).toEqual([
      "mailinfra:hosts: stack prod needs every role: no host has role webmail",
    ]);
    // The same hosts are fine outside prod.
    expect(problems(r, "lab", secrets)).toEqual([]);
  });

  it("Heartbeat timings in order", () => {
    const { raw } = lab();
    (raw.ha as Raw).deadtime = 3;
    expect(problems(raw)).toEqual(["mailinfra:ha.deadtime: must be longer than warntime"]);
    (raw.ha as Raw).deadtime = 6;
    expect(problems(raw)).toEqual(["mailinfra:ha.initdead: must be at least twice deadtime"]);
  });

  it("the secrets each setting needs", () => {
    const { raw, secrets } = stackSettings("lab");
    const s = new Set(secrets);
    s.delete("heartbeatAuthkey");
    s.delete("ldapAdminPassword");
    expect(problems(raw, "lab", s)).toEqual([
      "mailinfra:heartbeatAuthkey: required secret when ha.enabled is true (pulumi config set --secret heartbeatAuthkey)",
      "mailinfra:ldapAdminPassword: required secret (pulumi config set --secret ldapAdminPassword)",
    ]);
    const noKey = new Set(secrets);
    noKey.delete("sshPrivateKey");
    expect(problems(raw, "lab", noKey)[0]).toBe(
      "mailinfra:hosts[0].ssh.privateKeySecret: secret sshPrivateKey is not set (pulumi config set --secret sshPrivateKey < key)",
    );
  });

  it("prod never generates self-signed certificates", () => {
    const { raw, secrets } = stackSettings("prod");
    const s = new Set(secrets);
    s.delete("tlsCertificate");
    s.delete("tlsPrivateKey");
    expect(problems(raw, "prod", s)).toEqual([
      "mailinfra:tlsCertificate: required secret on stack prod (self-signed certificates are generated only when tls.selfSigned is true)",
    ]);
    s.add("tlsCertificate");
    expect(problems(raw, "prod", s)).toEqual([
      "mailinfra:tlsPrivateKey: tlsCertificate and tlsPrivateKey go together",
    ]);
  });

  it("requiredSecretKeys lists what the lab must supply", () => {
    const { raw, secrets } = stackSettings("lab");
    const s = parseStackSettings(raw, "lab", secrets) as StackSettings;
    expect(requiredSecretKeys(s).sort()).toEqual([...secrets].sort());
    expect(checkRules(s, "lab", new Set(requiredSecretKeys(s)))).toEqual([]);
  });

  it("subnet arithmetic", () => {
    expect(sameSubnet("198.18.0.20", "198.18.0.254", 24)).toBe(true);
    expect(sameSubnet("198.18.0.20", "198.18.1.1", 24)).toBe(false);
    expect(sameSubnet("198.18.0.20", "198.18.1.1", 23)).toBe(true);
    expect(sameSubnet("10.0.0.1", "198.18.0.1", 0)).toBe(true);
  });
});

/** Every leaf key path of a zod schema: `hosts[].ssh.port`, `ha.vip` … */
function keyPaths(schema: unknown, prefix = ""): string[] {
  const def = (schema as { _zod: { def: Record<string, unknown> } })._zod.def;
  switch (def.type) {
    case "optional":
    case "default":
    case "prefault":
    case "nullable":
      return keyPaths(def.innerType, prefix);
    case "pipe":
      return keyPaths(def.in, prefix);
    case "array": {
      const inner = keyPaths(def.element, `${prefix}[]`);
      return inner.length === 1 && inner[0] === `${prefix}[]` ? [prefix] : inner;
    }
    case "object":
      return Object.entries(def.shape as Record<string, unknown>).flatMap(([k, v]) =>
        keyPaths(v, prefix ? `${prefix}.${k}` : k),
      );
    default:
      return [prefix];
  }
}

describe("README config reference", () => {
  const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
  const section = readme.slice(
    readme.indexOf("<!-- section:config -->"),
    readme.indexOf("<!-- /section:config -->"),
  );

  it("lists every key of the schema", () => {
    const paths = keyPaths(StackConfigSchema);
    expect(paths).toContain("hosts[].ssh.port");
    const missing = paths.filter((p) => !section.includes(`\`${p}\``));
    expect(missing).toEqual([]);
  });

  it("lists every secret key", () => {
    // a table row whose first cell is the key (the formatter pads the cells)
    const missing = Object.keys(SECRET_KEYS).filter(
      (k) => !new RegExp(`^\\|\\s*\`${k}\`\\s*\\|`, "m").test(section),
    );
    expect(missing).toEqual([]);
  });
});
