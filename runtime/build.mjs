// Bundles the runtime into one file for the servers: every JavaScript
// dependency inside, no npm needed on the hosts (runtime/test/cli checks that
// the bundle runs from a directory without node_modules).
//
// Node.js: the bundle runs on Debian 12's Node 18 (18.20.4) and on Node 20;
// runtime/test/cli/node18.test.ts proves it with Debian's own node 18 binary
// (scripts/node18.sh) and the machine's node 20. Several dependencies
// declare more (ldapts, smtp-server, nodemailer, mailparser, imapflow >= 20,
// mailauth and its undici 7 >= 20.18.1) than they use: the syntax is lowered
// for node18 here, and the few Node 20 globals they touch are filled in by
// src/cli/compat.ts. The floor is the version tested: 18.20.4 is what
// Debian 12 (bookworm and bookworm-security) ships today. The banner below
// refuses older versions with a clear message before any module loads.
// Keep MIN_NODE and engines.node in package.json (and the root's) the same.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { build } from "esbuild";

// `node build.mjs --outfile /tmp/x/mailinfra.mjs`: tests build their own copy.
const outfileArg = process.argv.indexOf("--outfile");
const outfile = outfileArg > 0 ? process.argv[outfileArg + 1] : "dist/mailinfra.mjs";

const pkg = JSON.parse(readFileSync(new URL("./package.json", import.meta.url), "utf8"));

function gitCommit() {
  try {
    return execFileSync("git", ["rev-parse", "--short=12", "HEAD"], {
      cwd: new URL(".", import.meta.url),
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    }).trim();
  } catch {
    return "";
  }
}

const MIN_NODE = [18, 20, 4];
const nodeCheck = [
  `{const v=process.versions.node.split(".").map(Number),m=${JSON.stringify(MIN_NODE)};`,
  "if(v[0]<m[0]||(v[0]===m[0]&&(v[1]<m[1]||(v[1]===m[1]&&v[2]<m[2])))){",
  `process.stderr.write("mailinfra needs Node.js >= ${MIN_NODE.join(".")}; this is "+process.version+"\\n");process.exit(1);}}`,
].join("");

await build({
  entryPoints: ["src/cli/main.ts"],
  outfile,
  bundle: true,
  platform: "node",
  target: "node18",
  format: "esm",
  sourcemap: "linked",
  legalComments: "linked",
  define: {
    __MAILINFRA_VERSION__: JSON.stringify(pkg.version),
    __MAILINFRA_COMMIT__: JSON.stringify(gitCommit()),
  },
  // CommonJS dependencies call require(); give the ESM bundle one.
  banner: {
    js: [
      "#!/usr/bin/env node",
      nodeCheck,
      "import { createRequire as __mailinfraCreateRequire } from 'node:module'; const require = __mailinfraCreateRequire(import.meta.url);",
    ].join("\n"),
  },
  logLevel: "warning",
});
