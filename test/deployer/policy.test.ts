// The policies themselves catch what they are meant to catch.
import { expect, it } from "vitest";
import type { ProgramRun, Recorded } from "./harness.js";
import { expectNoSecretInPlainInputs } from "./policy.js";

const SIG = { "4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270" };
const rec = (inputs: Record<string, unknown>): Recorded => ({
  type: "command:remote:Command",
  name: "x",
  custom: true,
  inputs,
  start: 1,
  end: 2,
  dependsOn: [],
});
const secrets = [
  "alpha-secret-1",
  "bravo-secret-2",
  "charlie-secret-3",
  "delta-secret-4",
  "echo-secret-5",
  "fox-secret-6",
];
const run = (r: Recorded): ProgramRun => ({ resources: [r], outputs: {}, secrets, errors: [] });

it("flags a secret in a command string", () => {
  expect(() => expectNoSecretInPlainInputs(run(rec({ create: "set -eu\necho bravo-secret-2" })), {})).toThrow(
    /secret value appears/,
  );
});

it("accepts a secret that travels wrapped (stdin, a copied file)", () => {
  expect(() =>
    expectNoSecretInPlainInputs(
      run(rec({ create: "set -eu\ncat", stdin: { ...SIG, value: "bravo-secret-2" } })),
      {},
    ),
  ).not.toThrow();
});

it("flags SSH environment variables", () => {
  expect(() =>
    expectNoSecretInPlainInputs(run(rec({ create: "set -eu", environment: { A: "b" } })), {}),
  ).toThrow();
});
