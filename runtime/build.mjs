// Bundles the runtime into one file for the servers: every JavaScript
// dependency inside, no npm needed on the hosts.
import { build } from "esbuild";

await build({
  entryPoints: ["src/cli/main.ts"],
  outfile: "dist/mailinfra.mjs",
  bundle: true,
  platform: "node",
  target: "node20",
  format: "esm",
  sourcemap: "linked",
  legalComments: "linked",
  // CommonJS dependencies call require(); give the ESM bundle one.
  banner: {
    js: "import { createRequire as __mailinfraCreateRequire } from 'node:module'; const require = __mailinfraCreateRequire(import.meta.url);",
  },
  logLevel: "warning",
});
