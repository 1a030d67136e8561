import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  derivedSalt,
  RenderError,
  renderBaseLdif,
  renderSlapdConf,
  renderSlapdDefaults,
  type SlapdProviderParams,
  type SlapdReplicaParams,
  sshaHash,
} from "../../components/render/index.js";
import { FAKE, removeTempDirs, snapshotPath, tempDir } from "./fixtures.js";
import { baseLdif, provider, replica, slaptest } from "./ldap-fixtures.js";

afterAll(removeTempDirs);

describe("{SSHA}", () => {
  it("is SHA-1 of password and salt, then the salt (checked by slappasswd's counterpart)", () => {
    const hash = sshaHash("secret", Buffer.from("12345678"));
    const raw = Buffer.from(hash.slice("{SSHA}".length), "base64");
    expect(raw.subarray(20).toString()).toBe("12345678");
    // Independent check: OpenSSL computes the same digest.
    const digest = execFileSync("openssl", ["dgst", "-sha1", "-binary"], { input: "secret12345678" });
    expect(raw.subarray(0, 20).equals(digest)).toBe(true);
  });

  it("draws a new salt per call unless one is given", () => {
    expect(sshaHash("x")).not.toBe(sshaHash("x"));
    expect(derivedSalt("seed", "cn=a")).toEqual(derivedSalt("seed", "CN=A"));
    expect(derivedSalt("seed", "cn=a")).not.toEqual(derivedSalt("seed", "cn=b"));
  });
});

describe("slapd.conf", () => {
  it("provider matches the snapshot and passes slaptest", async () => {
    const conf = renderSlapdConf(provider);
    await expect(conf).toMatchFileSnapshot(snapshotPath("slapd.provider.conf"));
    expect(conf).not.toContain(FAKE.rootPassword);
    const r = slaptest(conf);
    expect(r.output).toContain("config file testing succeeded");
    expect(r.status).toBe(0);
  });

  it("replica matches the snapshot and passes slaptest", async () => {
    const conf = renderSlapdConf(replica);
    await expect(conf).toMatchFileSnapshot(snapshotPath("slapd.replica.conf"));
    expect(conf).toMatch(/^syncrepl rid=002$/m);
    expect(conf).toContain("type=refreshAndPersist");
    expect(conf).toContain("updateref ldap://ldap1.example.org/");
    expect(conf).not.toContain("moduleload syncprov");
    const r = slaptest(conf);
    expect(r.output).toContain("config file testing succeeded");
    expect(r.status).toBe(0);
  });

  it("with TLS and StartTLS to the provider passes slaptest", () => {
    const dir = tempDir("tls");
    const [key, cert] = [join(dir, "key.pem"), join(dir, "cert.pem")];
    execFileSync(
      "openssl",
      [
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=ldap2.example.org",
        "-days",
        "1",
        "-keyout",
        key,
        "-out",
        cert,
      ],
      { stdio: "ignore" },
    );
    const conf = renderSlapdConf({
      ...replica,
      tls: { certFile: cert, keyFile: key, caFile: cert },
      startTls: true,
    });
    expect(conf).toContain("starttls=critical");
    expect(conf).toContain(`TLSCACertificateFile ${cert}`);
    const r = slaptest(conf);
    expect(r.output).toContain("config file testing succeeded");
  });

  it("slaptest catches a broken config (the check can fail)", () => {
    const conf = renderSlapdConf(provider).replace("index mail eq", "index noSuchAttribute eq");
    const r = slaptest(conf);
    expect(r.status).not.toBe(0);
  });

  it.each([
    [{ suffix: "example.org" }, "suffix: not a DN"],
    [{ replicationDn: "cn=repl,dc=other,dc=org" }, "replicationDn: cn=repl,dc=other,dc=org is not under"],
    [{ serviceDns: ["cn=x,ou=services,dc=evil,dc=org"] }, "serviceDns[0]:"],
    [{ rootPasswordHash: FAKE.rootPassword }, "rootPasswordHash: expected a hash"],
    [{ schemaDir: "relative/schema" }, "schemaDir: expected an absolute path"],
    [{ maxSizeBytes: 10 }, "maxSizeBytes:"],
    [{ checkpoint: [0, 10] }, "checkpoint: expected positive integers"],
  ])("provider rejects %j", (patch, message) => {
    expect(() => renderSlapdConf({ ...provider, ...patch } as SlapdProviderParams)).toThrow(message);
  });

  it.each([
    [{ rid: 1000 }, "rid: expected 1-999"],
    [{ providerUri: "ldap1.example.org" }, "providerUri: expected ldap://"],
    [{ replicationPassword: 'has"quote' }, "replicationPassword: must be printable ASCII"],
    [{ replicationPassword: "has space" }, "replicationPassword:"],
    [{ retry: "often" }, "retry: invalid schedule"],
    [{ startTls: true }, "startTls: needs tls.caFile"],
  ])("replica rejects %j", (patch, message) => {
    expect(() => renderSlapdConf({ ...replica, ...patch } as SlapdReplicaParams)).toThrow(message);
  });

  it("rejects an unknown role (exhaustive check)", () => {
    expect(() => renderSlapdConf({ ...provider, role: "arbiter" } as unknown as SlapdProviderParams)).toThrow(
      "unhandled slapd role",
    );
  });
});

describe("base LDIF", () => {
  it("matches the snapshot (stable with a salt seed) and holds hashes, never passwords", async () => {
    const ldif = renderBaseLdif(baseLdif);
    await expect(ldif).toMatchFileSnapshot(snapshotPath("base.ldif"));
    expect(renderBaseLdif(baseLdif)).toBe(ldif);
    for (const pw of [FAKE.servicePassword, FAKE.replicationPassword]) expect(ldif).not.toContain(pw);
    expect(ldif.match(/^userPassword: \{SSHA\}/gm)).toHaveLength(3);
  });

  it("changes on every render without a salt seed", () => {
    const { saltSeed: _, ...unseeded } = baseLdif;
    expect(renderBaseLdif(unseeded)).not.toBe(renderBaseLdif(unseeded));
  });

  it("accepts an o= suffix and refuses others", () => {
    expect(renderBaseLdif({ ...baseLdif, suffix: "o=school" })).toMatch(
      /^dn: o=school\nobjectClass: top\nobjectClass: organization\no: school$/m,
    );
    expect(() => renderBaseLdif({ ...baseLdif, suffix: "ou=x,dc=example,dc=org" })).toThrow(
      "suffix: the first RDN must be dc= or o=",
    );
    expect(() => renderBaseLdif({ ...baseLdif, services: [{ name: "mx", password: "short" }] })).toThrow(
      "services[0].password",
    );
    expect(() =>
      renderBaseLdif({ ...baseLdif, services: [{ name: "replicator", password: FAKE.servicePassword }] }),
    ).toThrow("an account name is used twice");
    expect(() => renderBaseLdif({ ...baseLdif, organization: "two\nlines" })).toThrow(RenderError);
  });
});

describe("/etc/default/slapd", () => {
  it("matches the snapshot and points Debian's init script at slapd.conf", async () => {
    const text = renderSlapdDefaults();
    await expect(text).toMatchFileSnapshot(snapshotPath("slapd.default"));
    expect(text).toMatch(/^SLAPD_CONF=\/etc\/ldap\/slapd.conf$/m);
    // The file is sourced by /bin/sh: it must parse.
    const dir = tempDir("default");
    writeFileSync(join(dir, "slapd"), text);
    const out = execFileSync(
      "sh",
      ["-c", `. "$1"; echo "$SLAPD_CONF|$SLAPD_SERVICES"`, "sh", join(dir, "slapd")],
      {
        encoding: "utf8",
      },
    );
    expect(out.trim()).toBe("/etc/ldap/slapd.conf|ldap:/// ldapi:///");
    expect(() => renderSlapdDefaults({ services: ["ldap:/// $(reboot)"] })).toThrow(
      "services[0]: not an LDAP URL",
    );
  });
});
