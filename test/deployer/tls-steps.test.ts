// A new certificate restarts only the services that serve TLS (smtp, imap, pop3,
// managesieve), not LMTP; a new bundle or config restarts every one. The restart
// part of MailRuntime's install script is run by sh, systemctl replaced by a
// function that records what it is asked. And a TLS step's delete, run when the
// stack switches between a self-signed and a given pair, keeps the new pair.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { RESTART_MARKER, TLS_RESTART_MARKER } from "../../components/remote.js";
import { installScript, TLS_SERVICES } from "../../components/runtime.js";
import {
  cleanupScript,
  givenScript,
  selfSignedScript,
  TLS_DIR,
  type TlsSource,
} from "../../components/tls.js";

const script = installScript({
  runtimeYaml: "",
  files: [],
  units: [
    { service: "lmtp", text: "", heartbeatManaged: true },
    { service: "imap", text: "", heartbeatManaged: true },
    { service: "smtp", text: "", heartbeatManaged: false },
  ],
  user: "mailinfra",
  prefix: "/opt/mailinfra",
  nodePath: "/usr/bin/node",
});

/** The decision lines (from `started=0` to the health wait) run with changed/tls set. */
function restarts(changed: 0 | 1, tls: 0 | 1): string[] {
  const lines = script.split("\n");
  const from = lines.indexOf("started=0");
  const to = lines.findIndex((l) => l.startsWith('if [ "$started" = 1 ]'));
  expect(from).toBeGreaterThan(0);
  expect(to).toBeGreaterThan(from);
  const body = [
    'systemctl() { case "$1" in is-active) return 0;; restart) echo "$2";; esac; }',
    `changed=${changed}`,
    `tls=${tls}`,
    ...lines.slice(from, to),
  ].join("\n");
  const r = spawnSync("sh", ["-c", body], { encoding: "utf8" });
  expect(r.status, r.stderr).toBe(0);
  return r.stdout.split("\n").filter((l) => l.startsWith("mailinfra-") && !l.includes(" "));
}

describe("restarts after a certificate change", () => {
  it("the TLS marker restarts the TLS services only; the general marker restarts all", () => {
    expect(TLS_SERVICES).not.toContain("lmtp");
    expect(restarts(0, 1).sort()).toEqual(["mailinfra-imap.service", "mailinfra-smtp.service"]);
    expect(restarts(1, 0).sort()).toEqual([
      "mailinfra-imap.service",
      "mailinfra-lmtp.service",
      "mailinfra-smtp.service",
    ]);
    expect(restarts(0, 0)).toEqual([]);
    expect(script).toContain(`[ -e ${TLS_RESTART_MARKER} ] && tls=1`);
    expect(script).toContain(`rm -f ${RESTART_MARKER} ${TLS_RESTART_MARKER}`);
  });

  it("both certificate scripts mark the TLS services, not every service", () => {
    for (const s of [selfSignedScript("mailinfra", ["a.example"], []), givenScript("mailinfra")]) {
      expect(s).toContain(`touch ${TLS_RESTART_MARKER}`);
      expect(s).not.toContain(RESTART_MARKER);
    }
  });
});

describe("a TLS step's delete after a switch between self-signed and given", () => {
  const root = mkdtempSync(join(tmpdir(), "mailinfra-tls-cleanup-"));
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  /** Runs cleanupScript(step) on a directory whose pair came from `installed`; true if the pair is still there. */
  function survives(installed: TlsSource | undefined, step: TlsSource): boolean {
    const dir = mkdtempSync(join(root, "tls-"));
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "cert.pem"), "x");
    if (installed) writeFileSync(join(dir, "source"), installed);
    const r = spawnSync("sh", ["-c", cleanupScript(step).replaceAll(TLS_DIR, dir)], { encoding: "utf8" });
    expect(r.status, r.stderr).toBe(0);
    return existsSync(join(dir, "cert.pem"));
  }

  it("removes the pair only when the step being deleted installed it", () => {
    // Pulumi creates the new step first, then deletes the old one: the new pair stays.
    expect(survives("given", "self-signed")).toBe(true);
    expect(survives("given", "shared")).toBe(true);
    expect(survives("self-signed", "given")).toBe(true);
    // Removing TLS altogether (or a pair from before the source file) still cleans up.
    expect(survives("given", "given")).toBe(false);
    expect(survives("self-signed", "self-signed")).toBe(false);
    expect(survives(undefined, "given")).toBe(false);
  });

  it("each install script records its source", () => {
    expect(selfSignedScript("mailinfra", ["a.example"], [])).toContain(
      `printf self-signed > ${TLS_DIR}/source`,
    );
    expect(givenScript("mailinfra")).toContain(`printf '%s' 'given' > ${TLS_DIR}/source`);
  });
});
