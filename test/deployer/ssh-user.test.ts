// Hosts reached as an SSH user other than root (an admin with sudo): every step
// runs as root through `sudo -n`, fails clearly without a NOPASSWD rule, and its
// secrets still travel on stdin. The wrapper runs for real in sh, as root and as
// `nobody` (with the real sudo, which has no rule for nobody, and with a stand-in
// that grants it); the lab deploys relay2 this way through the real sudo.
import { chmod, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { asRoot, STAGE_DIR, stageDirLine } from "../../components/remote.js";

const SCRIPT = 'set -eu\nread -r line\necho "as $(id -u): $line"';
const asNobody = process.getuid?.() === 0;
let dir: string;

/** Runs `text` with sh as nobody, with PATH = `path`, `input` on stdin. */
function runAsNobody(text: string, path: string, input = "") {
  return execa("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", text], {
    env: { PATH: path },
    extendEnv: false,
    input,
    reject: false,
  });
}

describe("asRoot: steps for an SSH user other than root", () => {
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "mailinfra-sudo-"));
    await chmod(dir, 0o755);
    // PATH without sudo: only what the wrapper needs besides it.
    await Promise.all(
      ["mkdir", "nosudo", "fakesudo"].map((d) =>
        execa("install", ["-d", "-m", "0755", join(dir, d)]).then(() => undefined),
      ),
    );
    for (const tool of ["id", "uname", "sh", "cat", "head", "true"]) {
      const { stdout } = await execa("which", [tool]);
      await symlink(stdout.trim(), join(dir, "nosudo", tool));
      await symlink(stdout.trim(), join(dir, "fakesudo", tool));
    }
    // A sudo that grants everything: records its arguments and runs the command after `--`.
    await writeFile(
      join(dir, "fakesudo", "sudo"),
      `#!/bin/sh\necho "sudo $*" | head -n 1 >> ${dir}/fakesudo.log\n[ "$1" = -n ] || exit 2\nshift\n[ "$1" = -- ] && shift\nexec "$@"\n`,
      { mode: 0o755 },
    );
    await writeFile(join(dir, "fakesudo.log"), "", { mode: 0o666 });
    await chmod(join(dir, "fakesudo.log"), 0o666);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("leaves a root user's script as it is", () => {
    expect(asRoot("root", SCRIPT)).toBe(SCRIPT);
  });

  it("wraps the script for any other user, which `sh -n` parses; the script is one quoted argument", async () => {
    const wrapped = asRoot("admin", `${SCRIPT}\necho 'quoted'`);
    expect(wrapped.startsWith("set -eu\n")).toBe(true);
    expect(wrapped).toContain("exec sudo -n -- sh -c 'set -eu\nread -r line");
    expect(wrapped).toContain(`echo '\\''quoted'\\''`);
    expect((await execa("sh", ["-n"], { input: wrapped, reject: false })).exitCode).toBe(0);
  });

  it.runIf(asNobody)("runs the script itself when the user is root after all (uid 0)", async () => {
    const r = await execa("sh", ["-c", asRoot("admin", SCRIPT)], { input: "from stdin\n", reject: false });
    expect(r.stdout).toBe("as 0: from stdin");
  });

  it.runIf(asNobody)("runs the script through sudo -n, with stdin passed through", async () => {
    const r = await runAsNobody(asRoot("admin", SCRIPT), join(dir, "fakesudo"), "secret-on-stdin\n");
    expect(r.stderr).toBe("");
    // The stand-in sudo does not change the uid: the script ran through it, stdin intact.
    expect(r.stdout).toBe("as 65534: secret-on-stdin");
    expect(await execa("cat", [join(dir, "fakesudo.log")]).then((x) => x.stdout)).toContain(
      "sudo -n true\nsudo -n -- sh -c set -eu",
    );
  });

  it.runIf(asNobody)(
    "fails clearly, running nothing, when the user has no passwordless sudo (the real sudo)",
    async () => {
      const r = await runAsNobody(asRoot("nobody", "set -eu\necho RAN"), "/usr/sbin:/usr/bin:/sbin:/bin");
      expect(r.exitCode).toBe(1);
      expect(r.stdout).toBe("");
      expect(r.stderr).toMatch(
        /^mailinfra: \S+: SSH user nobody needs passwordless sudo \(sudo -n\): add a NOPASSWD rule$/,
      );
    },
  );

  it.runIf(asNobody)("fails clearly when sudo is not installed", async () => {
    const r = await runAsNobody(asRoot("nobody", "set -eu\necho RAN"), join(dir, "nosudo"));
    expect(r.exitCode).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(/SSH user nobody is not root and sudo is not installed$/);
  });

  it("gives the staging directory to the SSH user, so SFTP can write there", () => {
    expect(stageDirLine("admin")).toBe(
      `install -d -m 0700 -o 'admin' -g root ${STAGE_DIR}\nchown -R 'admin' ${STAGE_DIR}`,
    );
  });
});
