// TLS between the services and slapd, under the SDK's mocks: the LDAP hosts'
// certificate step (one self-signed pair for all LDAP names on lab, made on the
// provider and copied to the replica; the given pair on prod), slapd.conf with
// StartTLS, TLSVerifyClient never and `security simple_bind=64`, the replica's
// syncrepl with starttls=critical against the CA, and every runtime.yaml with
// `ldap.tls` and the CA file beside it. `ldap.tls: false` renders none of it.
import { beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { LDAP_CA_FILE, LDAP_TLS, SYSTEM_CA_BUNDLE } from "../../components/ldap.js";
import { LDAP_CA_FILE_RUNTIME } from "../../components/runtime-values.js";
import {
  ensureBundle,
  hostOf,
  type ProgramRun,
  type Recorded,
  runProgram,
  stackConfig,
  testSecret,
  unwrapped,
} from "./harness.js";
import { commandOf, expectAfter, expectNoSecretInPlainInputs, step } from "./policy.js";

async function staged(run: ProgramRun, name: string): Promise<string> {
  const r = step(run, name);
  return (unwrapped(r.inputs.source) as { text: Promise<string> }).text;
}

function runtimeConfigs(run: ProgramRun): Recorded[] {
  return run.resources.filter((r) => r.name.endsWith("-runtime-config"));
}

const LAB = { ldap1: "198.18.0.31", ldap2: "198.18.0.32" };

describe("stack lab (self-signed)", () => {
  const { config, secretKeys } = stackConfig("lab");
  let run: ProgramRun;
  beforeAll(async () => {
    await ensureBundle();
    run = await runProgram("lab", config, secretKeys);
  }, 120_000);

  it("makes ONE certificate for the LDAP hosts' names on the provider and copies it to the replica", () => {
    expect(run.errors).toEqual([]);
    const gen = step(run, "ldap-tls-ldap1-selfsigned");
    expect(hostOf(gen)).toBe(LAB.ldap1);
    const create = commandOf(gen);
    expect(create).toContain(`dir=${LDAP_TLS.dir}`);
    expect(create).toContain(
      "want='DNS:ldap1.lab.example,DNS:ldap1,DNS:ldap2.lab.example,DNS:ldap2,IP:198.18.0.31,IP:198.18.0.32'",
    );
    expect(create).toContain("chown openldap:openldap");
    const install = step(run, "ldap-tls-ldap2-install");
    expect(hostOf(install)).toBe(LAB.ldap2);
    // The pair reaches the replica on stdin, as a secret.
    expect(JSON.stringify(install.inputs.stdin)).toContain("1b47061264138c4ac30d75fd1eb44270");
    expect(commandOf(install)).toContain(`${LDAP_TLS.key} 0600 openldap:openldap`);
    // Before slapd is configured with it.
    expectAfter(run, "ldap-ldap1-configure", "ldap-tls-ldap1-selfsigned");
    expectAfter(run, "ldap-ldap2-configure", "ldap-tls-ldap2-install");
    // The services' own pairs stay apart (another directory, another owner).
    expect(commandOf(step(run, "mx1-tls-selfsigned"))).not.toContain(LDAP_TLS.dir);
  });

  it("renders slapd.conf with StartTLS, no client certificates and simple binds only over TLS", async () => {
    const provider = await staged(run, "ldap-ldap1-slapd-conf");
    for (const line of [
      `TLSCertificateFile ${LDAP_TLS.cert}`,
      `TLSCertificateKeyFile ${LDAP_TLS.key}`,
      `TLSCACertificateFile ${LDAP_CA_FILE}`,
      "TLSVerifyClient never",
      "security simple_bind=64",
    ])
      expect(provider).toMatch(new RegExp(`^${line.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`, "m"));
    const replica = await staged(run, "ldap-ldap2-slapd-conf");
    expect(replica).toContain("security simple_bind=64");
    expect(replica).toContain(`provider=ldap://${LAB.ldap1}/`);
    expect(replica).toMatch(/^\tstarttls=critical$/m);
    expect(replica).toMatch(/^\ttls_reqcert=demand$/m);
    expect(replica).toContain(`\ttls_cacert=${LDAP_CA_FILE}`);
    // One listener for LDAP (StartTLS on 389) and ldapi:///, no ldaps://.
    const defaults = await staged(run, "ldap-ldap1-slapd-default");
    expect(defaults).toContain('SLAPD_SERVICES="ldap://:389/ ldapi:///"');
    // The CA file is installed beside slapd.conf, and a new certificate restarts slapd.
    const configure = commandOf(step(run, "ldap-ldap1-configure"));
    expect(configure).toContain(`put /var/lib/mailinfra-deploy/ldap-ca.pem ${LDAP_CA_FILE} 0644 root:root`);
    expect(configure).toContain(`if [ -e ${LDAP_TLS.restartMarker} ]; then changed=1; fi`);
  });

  it("every runtime.yaml asks for StartTLS against the installed CA; the CA file is installed", async () => {
    const configs = runtimeConfigs(run);
    expect(configs.length).toBeGreaterThan(5);
    for (const r of configs) {
      const yaml = parse(await (unwrapped(r.inputs.source) as { text: Promise<string> }).text) as {
        ldap: { uris: string[]; tls?: unknown };
      };
      expect(yaml.ldap.tls, r.name).toEqual({ ca: LDAP_CA_FILE_RUNTIME, startTls: true });
      for (const u of yaml.ldap.uris) expect(u).toMatch(/^ldap:\/\/198\.18\.0\.3[12]\/$/);
      const h = r.name.replace(/-runtime-config$/, "");
      expect(step(run, `${h}-runtime-ldap-ca.pem`)).toBeDefined();
      // (relay2's script is wrapped in sudo's sh -c, its quotes escaped: match the parts.)
      const install = commandOf(step(run, `${h}-runtime-install`));
      expect(install).toMatch(
        /put \/var\/lib\/mailinfra-deploy\/ldap-ca\.pem \S*\/etc\/mailinfra\/ldap-ca\.pem\S* 0644 root:mailinfra/,
      );
    }
  });

  it("keeps secrets out of commands and plain inputs", () => {
    expectNoSecretInPlainInputs(run, config);
  });
});

describe("stack prod (given certificate)", () => {
  it("installs the given pair on each LDAP host; without tlsCaCertificate the system's CAs are used", async () => {
    const { config, secretKeys } = stackConfig("prod");
    config["mailinfra:tlsCertificate"] ??= testSecret("tlsCertificate");
    config["mailinfra:tlsPrivateKey"] ??= testSecret("tlsPrivateKey");
    const keys = [...new Set([...secretKeys, "mailinfra:tlsCertificate", "mailinfra:tlsPrivateKey"])];
    const run = await runProgram("prod", config, keys);
    expect(run.errors).toEqual([]);
    const ldapHosts = ["ldap1", "ldap2"];
    for (const h of ldapHosts) {
      const install = commandOf(step(run, `ldap-${h}-tls-install`));
      expect(install).toContain(
        `put /var/lib/mailinfra-deploy/ldap-tls-cert.pem ${LDAP_TLS.cert} 0600 openldap:openldap`,
      );
      expectAfter(run, `ldap-${h}-configure`, `ldap-${h}-tls-install`);
    }
    expect(run.resources.some((r) => r.name === "ldap-tls-ldap1-selfsigned")).toBe(false);
    expect(await staged(run, "ldap-ldap2-slapd-conf")).toContain(`tls_cacert=${SYSTEM_CA_BUNDLE}`);
    for (const r of runtimeConfigs(run)) {
      const yaml = parse(await (unwrapped(r.inputs.source) as { text: Promise<string> }).text) as {
        ldap: { tls?: unknown };
      };
      expect(yaml.ldap.tls, r.name).toEqual({ startTls: true });
    }
    expectNoSecretInPlainInputs(run, config);
  }, 120_000);

  it("with tlsCaCertificate: the CA goes to slapd and to every service", async () => {
    const { config, secretKeys } = stackConfig("prod");
    const ca = `-----BEGIN CERTIFICATE-----\nQ0EtZm9yLXRlc3Rz\n-----END CERTIFICATE-----\n`;
    config["mailinfra:tlsCertificate"] ??= testSecret("tlsCertificate");
    config["mailinfra:tlsPrivateKey"] ??= testSecret("tlsPrivateKey");
    config["mailinfra:tlsCaCertificate"] = ca;
    const keys = [
      ...new Set([
        ...secretKeys,
        "mailinfra:tlsCertificate",
        "mailinfra:tlsPrivateKey",
        "mailinfra:tlsCaCertificate",
      ]),
    ];
    const run = await runProgram("prod", config, keys);
    expect(run.errors).toEqual([]);
    expect(await staged(run, "ldap-ldap1-ldap-ca")).toBe(ca);
    expect(await staged(run, "ldap-ldap2-slapd-conf")).toContain(`tls_cacert=${LDAP_CA_FILE}`);
    const configs = runtimeConfigs(run);
    for (const r of configs) {
      const h = r.name.replace(/-runtime-config$/, "");
      expect(await staged(run, `${h}-runtime-ldap-ca.pem`)).toBe(ca);
    }
  }, 120_000);
});

describe("ldap.tls: false", () => {
  it("renders no TLS for slapd and none in runtime.yaml", async () => {
    const { config, secretKeys } = stackConfig("staging");
    const ldap = JSON.parse(config["mailinfra:ldap"]!) as Record<string, unknown>;
    config["mailinfra:ldap"] = JSON.stringify({ ...ldap, tls: false });
    const run = await runProgram("staging", config, secretKeys);
    expect(run.errors).toEqual([]);
    expect(run.resources.some((r) => r.name.startsWith("ldap-tls"))).toBe(false);
    const conf = await staged(run, "ldap-test1-slapd-conf");
    expect(conf).not.toContain("TLSCertificateFile");
    expect(conf).not.toContain("security simple_bind");
    const yaml = parse(await staged(run, "test1-runtime-config")) as { ldap: Record<string, unknown> };
    expect(yaml.ldap.tls).toBeUndefined();
  }, 120_000);
});
