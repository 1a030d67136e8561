import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  HEARTBEAT_SERVICES,
  RUNTIME_SERVICES,
  type RuntimeService,
  renderSystemdUnit,
  type SystemdUnitParams,
  unitName,
} from "../../components/render/index.js";
import { removeTempDirs, snapshotPath, tempDir } from "./fixtures.js";

afterAll(removeTempDirs);

const heartbeatRun = (s: RuntimeService): boolean => (HEARTBEAT_SERVICES as readonly string[]).includes(s);

function paramsFor(service: RuntimeService): SystemdUnitParams {
  const store = heartbeatRun(service);
  return {
    service,
    nodePath: "/usr/bin/node",
    prefix: "/opt/mailinfra",
    readWritePaths: store ? ["/srv/mail"] : service === "smtp" ? ["/var/spool/mailinfra"] : [],
    enableAtBoot: !store,
    ...(store ? { requireMountPoint: "/srv/mail" } : {}),
  };
}

/** `systemd-analyze verify` on a unit file: rc 0 and no warning at all. */
function verify(text: string, name: string): { status: number | null; output: string } {
  const dir = tempDir("unit");
  const file = join(dir, name);
  writeFileSync(file, text);
  const r = spawnSync("systemd-analyze", ["verify", "--man=no", file], { encoding: "utf8" });
  return { status: r.status, output: `${r.stdout}${r.stderr}`.trim() };
}

describe("systemd units", () => {
  it.each(RUNTIME_SERVICES)("%s matches the snapshot", async (service) => {
    await expect(renderSystemdUnit(paramsFor(service))).toMatchFileSnapshot(snapshotPath(unitName(service)));
  });

  it.each(RUNTIME_SERVICES)("%s passes systemd-analyze verify without a warning", (service) => {
    // verify checks that ExecStart's binary exists: use this machine's node.
    const unit = renderSystemdUnit({ ...paramsFor(service), nodePath: process.execPath });
    const r = verify(unit, unitName(service));
    expect(r.output).toBe("");
    expect(r.status).toBe(0);
  });

  it("systemd-analyze verify does catch mistakes (the check can fail)", () => {
    const unit = renderSystemdUnit({ ...paramsFor("imap"), nodePath: process.execPath });
    expect(verify(unit.replace("Restart=on-failure", "Restart=sometimes"), "x.service").output).toContain(
      "Failed to parse service restart specifier",
    );
    const missing = verify(
      renderSystemdUnit({ ...paramsFor("imap"), nodePath: "/nonexistent/node" }),
      "y.service",
    );
    expect(missing.status).not.toBe(0);
  });

  it("runs `<node> <prefix>/mailinfra.mjs serve <service> --config <file>`", () => {
    const unit = renderSystemdUnit({ service: "pop3", nodePath: "/usr/local/bin/node", prefix: "/opt/mi/" });
    expect(unit).toContain(
      "ExecStart=/usr/local/bin/node /opt/mi/mailinfra.mjs serve pop3 --config /etc/mailinfra/runtime.yaml",
    );
  });

  it("Heartbeat-run services have no [Install] section and require the SAN mount", () => {
    for (const service of HEARTBEAT_SERVICES) {
      const unit = renderSystemdUnit(paramsFor(service));
      expect(unit).not.toContain("[Install]");
      expect(unit).not.toContain("WantedBy=");
      expect(unit).toContain("AssertPathIsMountPoint=/srv/mail");
      expect(unit).not.toContain("RequiresMountsFor");
    }
    expect(renderSystemdUnit(paramsFor("smtp"))).toMatch(/\[Install\]\nWantedBy=multi-user.target/);
  });

  it("drains on SIGTERM, has a high file limit and the hardening", () => {
    const unit = renderSystemdUnit({ ...paramsFor("imap"), stopTimeoutSeconds: 90 });
    for (const line of [
      "KillSignal=SIGTERM",
      "TimeoutStopSec=90",
      "Restart=on-failure",
      "LimitNOFILE=65536",
      "NoNewPrivileges=yes",
      "ProtectSystem=strict",
      "PrivateTmp=yes",
      "ReadWritePaths=-/srv/mail",
      "User=mailinfra",
      "AmbientCapabilities=CAP_NET_BIND_SERVICE",
    ])
      expect(unit.split("\n")).toContain(line);
  });

  it("gives root no extra capabilities, and notify units NotifyAccess", () => {
    const unit = renderSystemdUnit({ service: "smtp", user: "root", type: "notify" });
    expect(unit).not.toContain("AmbientCapabilities");
    expect(unit).toContain("Type=notify\nNotifyAccess=main");
  });

  it.each([
    [{ service: "ftp" }, 'service: unknown service "ftp"'],
    [{ nodePath: "node" }, "nodePath: expected an absolute path"],
    [{ prefix: "/opt/mail infra" }, "prefix: expected an absolute path"],
    [{ readWritePaths: ["/srv/../etc"] }, "readWritePaths[0]:"],
    [{ user: "Mail Infra" }, "user: not a user/group name"],
    [{ stopTimeoutSeconds: 0 }, "stopTimeoutSeconds: expected 1-3600"],
    [{ limitNofile: 100 }, "limitNofile: expected 1024-1048576"],
    [{ environment: { "BAD-NAME": "1" } }, "environment: invalid variable name"],
    [{ environment: { A: "$HOME" } }, "environment.A:"],
    [{ type: "forking" }, "unhandled unit type: forking"],
  ])("rejects %j", (patch, message) => {
    expect(() => renderSystemdUnit({ service: "imap", ...patch } as SystemdUnitParams)).toThrow(message);
  });
});
