// Stack lab under the SDK's mocks: the lab's addresses and interface, the
// secrets the lab's applier must supply, and a resource count that keeps the
// apply fast.
import { beforeAll, describe, expect, it } from "vitest";
import { parseStackSettings, requiredSecretKeys } from "../../components/config.js";
import {
  ensureBundle,
  hostOf,
  type ProgramRun,
  runProgram,
  stackConfig,
  stackSettings,
  unwrapped,
} from "./harness.js";
import { commandOf, expectNoSecretInPlainInputs, expectShellSyntax, step, steps } from "./policy.js";

const { config, secretKeys } = stackConfig("lab");
let run: ProgramRun;

beforeAll(async () => {
  await ensureBundle();
  run = await runProgram("lab", config, secretKeys);
}, 120_000);

describe("stack lab", () => {
  it("targets only the lab's 198.18.0.x hosts", () => {
    expect(run.errors).toEqual([]);
    const addresses = new Set(steps(run).map(hostOf));
    expect(addresses.size).toBe(11);
    for (const a of addresses) expect(a).toMatch(/^198\.18\.0\.(1[1-4]|2[12]|3[12]|4[12]|51)$/);
  });

  it("puts the VIP on host0 with the SAN at /dev/sdb", () => {
    const hr = step(run, "store-ha-store1-haresources");
    expect(hr).toBeDefined();
    const endpoints = unwrapped(run.outputs.endpoints) as Record<string, unknown>;
    expect(endpoints.imap).toBe("198.18.0.20:143");
    expect(commandOf(step(run, "store1-san-format"))).toContain("dev='/dev/sdb'");
  });

  it("lists in the stack file exactly the secrets the program needs", () => {
    const { raw, secrets } = stackSettings("lab");
    expect(requiredSecretKeys(parseStackSettings(raw, "lab", secrets)).sort()).toEqual([...secrets].sort());
  });

  it("keeps the number of steps reasonable (~10 per host)", () => {
    expect(steps(run).length).toBeLessThan(130);
  });

  it("writes scripts that /bin/sh parses", async () => {
    await expectShellSyntax(run);
  });

  it("gives the store pair ONE self-signed certificate, generated once and passed on stdin", () => {
    const names = steps(run).map((r) => r.name);
    // No per-node certificate on the stores; every other host still makes its own.
    expect(names.filter((n) => /^store[12]-tls/.test(n))).toEqual([]);
    expect(names.filter((n) => n.startsWith("store-tls-")).sort()).toEqual([
      "store-tls-store1-selfsigned",
      "store-tls-store2-install",
    ]);
    expect(names).toContain("mx1-tls-selfsigned");
    const gen = step(run, "store-tls-store1-selfsigned");
    const install = step(run, "store-tls-store2-install");
    expect(hostOf(gen)).toBe("198.18.0.21");
    expect(hostOf(install)).toBe("198.18.0.22");
    // One name list for both nodes: the VIP's service names first, both nodes, the VIP.
    expect(commandOf(gen)).toContain(
      "want='DNS:imap.lab.example,DNS:pop.lab.example,DNS:store1.lab.example,DNS:store1,DNS:store2.lab.example,DNS:store2,IP:198.18.0.20,IP:198.18.0.21,IP:198.18.0.22'",
    );
    expect(commandOf(gen).split("openssl req").length).toBe(2);
    expect(commandOf(install)).not.toContain("openssl req");
    // The pair reaches store2 only as a secret on stdin, after it was generated.
    expect(install.dependsOn).toContain("store-tls-store1-selfsigned");
    expect(install.start).toBeGreaterThan(gen.end);
    expect(JSON.stringify(install.inputs.stdin)).toContain("4dabf18193072939515e22adb298388d");
    // Each store's runtime restarts when its copy of the certificate changes.
    for (const n of ["store1", "store2"]) {
      const rt = step(run, `${n}-runtime-install`);
      expect(rt.dependsOn).toContain("store-tls");
    }
  });

  it("runs every step on relay2 (SSH user labadmin) as root through sudo -n, and no other host's", () => {
    const onRelay2 = steps(run).filter((r) => hostOf(r) === "198.18.0.14");
    expect(onRelay2.length).toBeGreaterThan(5);
    for (const r of onRelay2) {
      const c = unwrapped(r.inputs) as { connection: { user: string }; create?: string; delete?: string };
      expect(c.connection.user, r.name).toBe("labadmin");
      if (r.type !== "command:remote:Command") continue;
      for (const text of [c.create, c.delete].filter((x) => x !== undefined))
        expect(text, r.name).toMatch(/\n {2}exec sudo -n -- sh -c 'set -eu\n/);
    }
    // Its staging directory belongs to labadmin (SFTP writes there); root's elsewhere.
    expect(commandOf(step(run, "relay2-base"))).toContain(
      "install -d -m 0700 -o '\\''labadmin'\\'' -g root /var/lib/mailinfra-deploy",
    );
    expect(commandOf(step(run, "relay1-base"))).toContain(
      "install -d -m 0700 -o 'root' -g root /var/lib/mailinfra-deploy",
    );
    for (const r of steps(run).filter((x) => hostOf(x) !== "198.18.0.14"))
      expect(commandOf(r), r.name).not.toContain("sudo");
  });

  it("keeps secrets out of commands and plain inputs", () => {
    expectNoSecretInPlainInputs(run, config);
  });
});
