// `pulumi preview` runs nothing on the hosts and leaves step outputs unknown:
// the program must still register the whole graph.
import { beforeAll, expect, it } from "vitest";
import { ensureBundle, runProgram, stackConfig } from "./harness.js";
import { steps } from "./policy.js";

beforeAll(ensureBundle, 120_000);

it("registers every step in preview mode, where outputs are unknown", async () => {
  const { config, secretKeys } = stackConfig("prod");
  const t0 = performance.now();
  const run = await runProgram("prod", config, secretKeys, { preview: true });
  const ms = performance.now() - t0;
  expect(run.errors).toEqual([]);
  expect(steps(run).length).toBeGreaterThan(90);
  // Registration of the whole prod graph stays quick (SDK cost ~3-5 ms per resource).
  expect(ms).toBeLessThan(20_000);
});
