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

  it("keeps secrets out of commands and plain inputs", () => {
    expectNoSecretInPlainInputs(run, config);
  });
});
