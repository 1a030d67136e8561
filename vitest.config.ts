import { defineConfig } from "vitest/config";

// Three projects: the deployer (pure renderers and the program under the SDK's
// mocks), the runtime (services on loopback against real peers), and the lab
// (11 real hosts; run on its own after the others, see scripts/test.sh).
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "deployer",
          include: ["test/**/*.test.ts", "components/**/*.test.ts"],
          exclude: ["test/lab/**"],
          testTimeout: 60_000,
          hookTimeout: 60_000,
        },
      },
      {
        test: {
          name: "runtime",
          include: ["runtime/**/*.test.ts"],
          exclude: ["**/node_modules/**"],
          testTimeout: 60_000,
          hookTimeout: 120_000,
        },
      },
      {
        test: {
          name: "lab",
          include: ["test/lab/**/*.test.ts", "lab/**/*.test.ts"],
          testTimeout: 600_000,
          hookTimeout: 900_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
