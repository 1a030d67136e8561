// Stack staging under the SDK's mocks: every role on the test server, no
// Heartbeat, the SAN mounted plainly, self-signed TLS generated on the host.
import { beforeAll, describe, expect, it } from "vitest";
import { BUILT_SERVICES } from "../../components/runtime-values.js";
import { ensureBundle, hostOf, type ProgramRun, runProgram, stackConfig, unwrapped } from "./harness.js";
import {
  commandOf,
  expectAfter,
  expectNoSecretInPlainInputs,
  expectShellSyntax,
  expectStrictShell,
  step,
  steps,
} from "./policy.js";

const { config, secretKeys } = stackConfig("staging");
let run: ProgramRun;

beforeAll(async () => {
  await ensureBundle();
  run = await runProgram("staging", config, secretKeys);
}, 120_000);

describe("stack staging", () => {
  it("puts every step on the test server", () => {
    expect(run.errors).toEqual([]);
    expect(run.resources.filter((r) => r.type === "mailinfra:host:Host").map((r) => r.name)).toEqual([
      "test1",
    ]);
    const addresses = new Set(steps(run).map(hostOf));
    expect([...addresses]).toEqual(["192.0.2.51"]);
  });

  it("runs every role's services there, enabled at boot (no Heartbeat)", () => {
    const units = steps(run)
      .filter((r) => r.name.startsWith("test1-runtime-unit-"))
      .map((r) => r.name.replace("test1-runtime-unit-", ""))
      .sort();
    const all = ["imap", "lmtp", "managesieve", "pop3", "smtp", "stats", "webmail"] as const;
    expect(units).toEqual(all.filter((s) => BUILT_SERVICES.has(s)));
    expect(units).toEqual(expect.arrayContaining(["imap", "lmtp", "pop3", "smtp"]));
    expect(run.resources.some((r) => r.type === "mailinfra:heartbeat:HeartbeatPair")).toBe(false);
    const install = commandOf(step(run, "test1-runtime-install"));
    for (const u of units) expect(install).toContain(`systemctl enable -q mailinfra-${u}.service`);
  });

  it("mounts the SAN plainly (no noauto) after the guarded format", () => {
    const m = commandOf(step(run, "test1-san-mount"));
    expect(m).toContain("/dev/sdb /srv/mail xfs noatime,inode64 0 0");
    expect(m).not.toContain("noauto");
    expect(m).toMatch(/mountpoint -q "\$mp"/);
    expect(commandOf(step(run, "test1-san-format"))).toContain("mkfs.xfs -L 'mailstaging'");
    expectAfter(run, "test1-san-mount", "test1-san-format");
    expectAfter(run, "test1-runtime-install", "test1-san-mount");
  });

  it("has one LDAP provider and no replica, before the runtime", () => {
    expect(
      run.resources
        .filter((r) => r.name.startsWith("ldap-") && r.name.endsWith("-configure"))
        .map((r) => r.name),
    ).toEqual(["ldap-test1-configure"]);
    expectAfter(run, "test1-runtime-install", "ldap-test1-base");
  });

  it("generates a self-signed certificate on the host for its names", () => {
    const tls = commandOf(step(run, "test1-tls-selfsigned"));
    expect(tls).toContain("openssl req -x509");
    expect(tls).toContain(
      "want='DNS:test1.staging.example.org,DNS:test1,DNS:mail.staging.example.org,DNS:imap.staging.example.org,DNS:pop.staging.example.org,DNS:webmail.staging.example.org,IP:192.0.2.51'",
    );
  });

  it("points LMTP, IMAP and webmail at the host itself", () => {
    const endpoints = unwrapped(run.outputs.endpoints) as Record<string, unknown>;
    expect(endpoints.imap).toBe("192.0.2.51:143");
    expect(endpoints.lmtp).toBe("192.0.2.51:24");
    expect(endpoints.mx).toEqual(["192.0.2.51:25"]);
  });

  it("writes scripts that /bin/sh parses", async () => {
    await expectShellSyntax(run);
  });

  it("keeps secrets out of commands and plain inputs", () => {
    expectNoSecretInPlainInputs(run, config);
    expectStrictShell(run);
  });
});
