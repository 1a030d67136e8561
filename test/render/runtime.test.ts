import { spawnSync } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { type RuntimeYamlParams, renderRuntimeYaml } from "../../components/render/index.js";
import { RuntimeConfigSchema } from "../../runtime/src/config/schema.js";
import { removeTempDirs, snapshotPath, tempDir } from "./fixtures.js";

afterAll(removeTempDirs);

const ldap = {
  uris: ["ldap://198.18.0.42/", "ldap://198.18.0.41/"],
  baseDn: "dc=example,dc=org",
  bindDn: "cn=store,ou=services,dc=example,dc=org",
  bindPasswordFile: "/etc/mailinfra/secrets/ldap-bind",
};

const configs: Record<string, RuntimeYamlParams> = {
  store: {
    host: { name: "store1", roles: ["store"] },
    log: { level: "info" },
    metrics: { listen: "0.0.0.0:9465" },
    tls: { certFile: "/etc/mailinfra/tls/store.crt", keyFile: "/etc/mailinfra/tls/store.key" },
    ldap,
    store: { root: "/srv/mail", fsync: true },
    lmtp: { listen: ["198.18.0.20:24"] },
    imap: { listen: ["198.18.0.20:143"], tlsListen: ["198.18.0.20:993"], loginDisabledWithoutTls: true },
    pop3: { listen: ["198.18.0.20:110"], tlsListen: ["198.18.0.20:995"] },
  },
  mx: {
    host: { name: "mx1", roles: ["mx"] },
    ldap: { ...ldap, bindDn: "cn=mx,ou=services,dc=example,dc=org" },
    smtp: { domains: ["example.org", "students.example.org"], mx: { listen: ["0.0.0.0:25"] } },
    queue: { dir: "/var/spool/mailinfra", lmtp: { host: "198.18.0.20", port: 24 } },
    filter: {
      dnsbl: [{ zone: "zen.spamhaus.org", weight: 1 }],
      headerChecks: "regexp:/etc/mailinfra/header_checks",
      spamd: { host: "127.0.0.1", port: 783 },
      clamd: { host: "127.0.0.1", port: 3310 },
      spamTagScore: 5,
      spamRejectScore: 12,
      onScannerFailure: "closed",
    },
  },
  webmail: {
    host: { name: "webmail1", roles: ["webmail"] },
    webmail: { listen: ["0.0.0.0:443"], imapHost: "198.18.0.20", imapPort: 143 },
  },
};

describe("runtime.yaml", () => {
  it.each(Object.keys(configs))(
    "%s matches the snapshot and parses with RuntimeConfigSchema",
    async (name) => {
      const params = configs[name]!;
      const text = renderRuntimeYaml(params);
      await expect(text).toMatchFileSnapshot(snapshotPath(`runtime.${name}.yaml`));
      // What the runtime does at start: YAML → schema. Defaults fill in what was left out.
      expect(RuntimeConfigSchema.parse(parse(text))).toEqual(RuntimeConfigSchema.parse(params));
    },
  );

  it("names the bad key path", () => {
    const bad = { ...configs.store!, imap: { listen: ["143"] } } as RuntimeYamlParams;
    expect(() => renderRuntimeYaml(bad)).toThrow("runtime: imap.listen[0]: expected host:port");
    expect(() => renderRuntimeYaml({ host: { name: "x", roles: [] } } as RuntimeYamlParams)).toThrow(
      "runtime: host.roles:",
    );
  });

  it("keeps YAML-special strings as strings", () => {
    const text = renderRuntimeYaml({
      host: { name: "no", roles: ["test"] },
      smtp: { domains: ["yes", "1.0", "#x", "a: b"] },
    } as RuntimeYamlParams);
    const parsed = RuntimeConfigSchema.parse(parse(text));
    expect(parsed.host.name).toBe("no");
    expect(parsed.smtp?.domains).toEqual(["yes", "1.0", "#x", "a: b"]);
  });

  // The runtime's own checker, once its CLI has `config check`.
  const bundle = new URL("../../runtime/dist/mailinfra.mjs", import.meta.url).pathname;
  const probe = existsSync(bundle)
    ? spawnSync(process.execPath, [bundle, "--help"], { encoding: "utf8" })
    : undefined;
  const hasCheck = probe !== undefined && `${probe.stdout}${probe.stderr}`.includes("config check");
  it.runIf(hasCheck)("passes `mailinfra config check`", () => {
    const dir = tempDir("runtime");
    for (const [name, params] of Object.entries(configs)) {
      const file = join(dir, `${name}.yaml`);
      writeFileSync(file, renderRuntimeYaml(params));
      const r = spawnSync(process.execPath, [bundle, "config", "check", file], { encoding: "utf8" });
      expect(`${name}: ${r.status} ${r.stderr}`).toBe(`${name}: 0 `);
      expect(r.stdout.trim()).toBe("ok");
    }
    // The checker can fail: a hand-broken file is refused with its key path.
    const bad = join(dir, "bad.yaml");
    writeFileSync(bad, renderRuntimeYaml(configs.store!).replace("198.18.0.20:24", "24"));
    const r = spawnSync(process.execPath, [bundle, "config", "check", bad], { encoding: "utf8" });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("lmtp.listen[0]");
  });
});
