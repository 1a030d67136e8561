// The Host component's Node.js check: the minimum comes from the runtime's
// package.json engines (else the root's), and the check runs the real node.
// Its package step asks the real dpkg and calls apt-get only for what is missing.
import { readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { describe, expect, it } from "vitest";
import { baseScript, minimumNode, nodeCheckLines, packageLines } from "../../components/host.js";
import { REPO } from "./harness.js";

const pkg = (rel: string) =>
  JSON.parse(readFileSync(`${REPO}${rel}`, "utf8")) as { engines?: { node?: string } };

/** Runs the check lines with /bin/sh against this machine's node. */
async function check(min: string): Promise<{ code: number; out: string }> {
  const lines = `fail() { echo "$*" >&2; exit 1; }\n${nodeCheckLines(process.execPath, { version: min, from: "runtime/package.json" })}\necho ok`;
  const r = await execa("sh", ["-eu", "-c", lines], { reject: false });
  return { code: r.exitCode ?? 1, out: `${r.stdout}${r.stderr}` };
}

describe("Host: Node.js for the bundle", () => {
  it("takes the minimum from runtime/package.json engines.node, else the root package.json", () => {
    const runtimeEngines = pkg("runtime/package.json").engines?.node;
    const want = runtimeEngines ?? pkg("package.json").engines?.node;
    const min = minimumNode();
    expect(min.from).toBe(runtimeEngines ? "runtime/package.json" : "package.json");
    expect(want).toMatch(
      new RegExp(`^>=\\s*${min.version.replace(/\.0$/, "(\\.0)?").replaceAll(".", "\\.")}`),
    );
    const files: Record<string, string> = {
      "../runtime/package.json": JSON.stringify({ name: "r" }),
      "../package.json": JSON.stringify({ engines: { node: ">=20.18" } }),
    };
    expect(minimumNode((f) => files[f]!)).toEqual({ version: "20.18.0", from: "package.json" });
    files["../runtime/package.json"] = JSON.stringify({ engines: { node: ">=18.20.4" } });
    expect(minimumNode((f) => files[f]!)).toEqual({ version: "18.20.4", from: "runtime/package.json" });
    files["../runtime/package.json"] = JSON.stringify({ engines: { node: "^18 || ^20" } });
    expect(() => minimumNode((f) => files[f]!)).toThrow(
      'runtime/package.json: engines.node "^18 || ^20": expected the form ">=X.Y.Z"',
    );
  });

  it("puts the check in the base step of hosts that run the bundle only", () => {
    const args = {
      roles: ["mx"] as const,
      user: { name: "mailinfra", uid: 990 },
      prefix: "/opt/mailinfra",
      nodePath: "/usr/bin/node",
      minimumNode: { version: "18.20.4", from: "runtime/package.json" },
    };
    expect(baseScript(args, true)).toContain(
      "Node.js >= 18.20.4 (runtime/package.json engines.node) is needed",
    );
    expect(baseScript(args, false)).not.toContain("Node.js");
  });

  it("installs Debian's nodejs (when missing) for a bundle run by /usr/bin/node, not for a node elsewhere", () => {
    const args = {
      roles: ["mx"] as const,
      user: { name: "mailinfra", uid: 990 },
      prefix: "/opt/mailinfra",
      nodePath: "/usr/bin/node",
    };
    expect(baseScript(args, true)).toContain("for p in ca-certificates nodejs openssl; do");
    expect(baseScript(args, false)).toContain("for p in ca-certificates openssl; do");
    expect(baseScript({ ...args, nodePath: "/opt/node/bin/node" }, true)).toContain(
      "for p in ca-certificates openssl; do",
    );
  });

  it("passes on a node new enough and fails with a clear message otherwise", async () => {
    const [a, b, c] = process.versions.node.split(".").map(Number) as [number, number, number];
    for (const ok of [`${a}.${b}.${c}`, `${a}.${b}.0`, `${a - 2}.99.99`])
      expect((await check(ok)).out, ok).toBe("ok");
    for (const tooNew of [`${a}.${b}.${c + 1}`, `${a}.${b + 1}.0`, `${a + 1}.0.0`]) {
      const r = await check(tooNew);
      expect(r.code, tooNew).toBe(1);
      expect(r.out).toBe(
        `Node.js >= ${tooNew} (runtime/package.json engines.node) is needed at ${process.execPath} (runtime.nodePath), found v${process.versions.node}`,
      );
    }
    const missing = await execa(
      "sh",
      [
        "-eu",
        "-c",
        `fail() { echo "$*" >&2; exit 1; }\n${nodeCheckLines("/nonexistent/node", { version: "18.0.0", from: "package.json" })}`,
      ],
      { reject: false },
    );
    expect(missing.stderr).toBe(
      "Node.js >= 18.0.0 (package.json engines.node) is needed at /nonexistent/node (runtime.nodePath): not found",
    );
  });
});

describe("Host: base packages only when missing", () => {
  /** Runs packageLines against this machine's dpkg, with a stand-in apt-get that logs its calls. */
  async function install(pkgs: string[], aptUpdateFails = false) {
    const dir = await mkdtemp(join(tmpdir(), "mailinfra-apt-"));
    try {
      await writeFile(
        join(dir, "apt-get"),
        `#!/bin/sh\necho "apt-get $*" >> ${dir}/calls\n${aptUpdateFails ? '[ "$1" = update ] && exit 100\n' : ""}exit 0\n`,
        { mode: 0o755 },
      );
      await writeFile(join(dir, "calls"), "");
      const text = `fail() { echo "$*" >&2; exit 1; }\n${packageLines(pkgs)}`;
      const r = await execa("sh", ["-eu", "-c", text], {
        env: { PATH: `${dir}:${process.env.PATH}` },
        reject: false,
      });
      return { ...r, calls: readFileSync(join(dir, "calls"), "utf8").trim() };
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  it("never calls apt-get when dpkg reports every package installed (no mirror needed)", async () => {
    const r = await install(["openssl", "ca-certificates", "xfsprogs", "slapd"]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.calls).toBe("");
    expect(r.stdout).toBe("");
  });

  it("installs only the missing ones", async () => {
    const r = await install(["openssl", "mailinfra-not-a-package", "slapd"]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toBe("installing: mailinfra-not-a-package");
    expect(r.calls).toBe(
      "apt-get update -q\napt-get install -y -q --no-install-recommends mailinfra-not-a-package",
    );
  });

  it("fails clearly, naming the packages, when there is no mirror", async () => {
    const r = await install(["openssl", "mailinfra-not-a-package"], true);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toBe(
      "apt-get update failed: no package mirror? install these packages by hand: mailinfra-not-a-package",
    );
    expect(r.calls).toBe("apt-get update -q");
  });
});
