// A bad stack config stops the program before any resource is registered, with
// a message naming the key path.
import { beforeAll, expect, it } from "vitest";
import { ensureBundle, runProgram, stackConfig } from "./harness.js";

beforeAll(ensureBundle, 120_000);

it("fails before any resource, naming the key path and what was expected", async () => {
  const { config, secretKeys } = stackConfig("prod");
  const hosts = JSON.parse(config["mailinfra:hosts"]!) as { address: string }[];
  hosts[3]!.address = "198.51.100.256";
  config["mailinfra:hosts"] = JSON.stringify(hosts);
  const run = await runProgram("prod", config, secretKeys);
  expect(run.errors.join("\n")).toContain("mailinfra:hosts[3].address: expected an IPv4 address");
  expect(run.resources.filter((r) => r.type !== "pulumi:pulumi:Stack")).toEqual([]);
});

it("checks secret values when they resolve, naming the key", async () => {
  const { config, secretKeys } = stackConfig("prod");
  config["mailinfra:heartbeatAuthkey"] = "too short";
  const run = await runProgram("prod", config, secretKeys);
  expect(run.errors.join("\n")).toContain(
    "mailinfra:heartbeatAuthkey: expected 16 or more printable characters without spaces",
  );
  // The steps that would carry it never ran.
  expect(run.resources.some((r) => r.name.endsWith("-authkeys"))).toBe(false);
});
