// The lab stack deployed by the project's own program (index.ts) into 11 fresh
// hosts, then checked as ops would: SSH, the SAN, the VIP, Heartbeat, LDAP
// replication, the runtime's services and their /healthz; a re-apply that
// changes nothing, one that restarts only what a changed setting touches; the
// store pair's one certificate; a certificate and key given as stack secrets
// (signed by a test CA), served on the VIP, the relays and the MX; mail sent to each MX and submitted on each
// relay, read over IMAP and POP3 on the VIP (Python's own clients); and a power
// cut of the active store, after which the mail is still there.
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse, stringify } from "yaml";
import { LDAP_CA_FILE } from "../../components/ldap.js";
import { LDAP_CA_FILE_RUNTIME } from "../../components/runtime-values.js";
import { TLS_CERT, TLS_KEY } from "../../components/tls.js";
import type { ApplyReport } from "../../lab/apply/applier.js";
import { REPORT_FILE } from "../../lab/apply/cli.js";
import { run } from "../../lab/exec.js";
import { paths, REPO_ROOT } from "../../lab/paths.js";
import { HOST_NAMES, type HostName, LAB_STACK_FILE, SAN_DEVICE, SAN_HOSTS } from "../../lab/topology.js";
import { SERVICES } from "../../runtime/src/cli/services.js";
import { addr, lab, labLock, leftovers, sh, topology } from "./helpers.js";

// MAILINFRA_LAB_PROGRAM: try a work-in-progress copy of the program instead.
const PROGRAM = process.env.MAILINFRA_LAB_PROGRAM ?? join(REPO_ROOT, "index.ts");
const programArgs = process.env.MAILINFRA_LAB_PROGRAM ? ["--program", PROGRAM] : [];
const lastReport = () => JSON.parse(readFileSync(REPORT_FILE, "utf8")) as ApplyReport;

/**
 * The store that holds the SAN mount (Heartbeat's active node). Heartbeat takes
 * its resources some seconds after it starts (initdead, then acquisition:
 * 11.5-12.9 s measured), so this waits for a mount to appear.
 */
async function findActiveStore(): Promise<{ active: HostName; passive: HostName; mounts: string[] }> {
  const mounts = await waitFor(
    "a store to mount the SAN",
    async () => {
      const m = await Promise.all(
        SAN_HOSTS.map((h) => sh(h, `findmnt -n -S ${SAN_DEVICE} -o TARGET,FSTYPE || true`)),
      );
      return m.some((x) => x !== "") ? m : undefined;
    },
    45_000,
  );
  const i = mounts.findIndex((m) => m !== "");
  const active = SAN_HOSTS[i] ?? SAN_HOSTS[0]!;
  return { active, passive: SAN_HOSTS.find((h) => h !== active)!, mounts };
}

/** Waited for once: when Heartbeat never mounted the SAN, later tests fail at once, not after another wait. */
let activeOnce: ReturnType<typeof findActiveStore> | undefined;
function activeStore(): ReturnType<typeof findActiveStore> {
  activeOnce ??= findActiveStore();
  return activeOnce;
}

/** The first line a server sends (SMTP/LMTP 220, IMAP * OK, POP3 +OK …). */
function greeting(host: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port, timeout: 5000 });
    let data = "";
    socket.setEncoding("utf8");
    socket.on("data", (d: string) => {
      data += d;
      if (data.includes("\n")) {
        socket.destroy();
        resolve(data.split(/\r?\n/)[0] ?? "");
      }
    });
    socket.on("timeout", () => {
      socket.destroy();
      reject(new Error(`${host}:${port}: no greeting within 5 s`));
    });
    socket.on("error", reject);
  });
}

const GREETINGS: Record<string, RegExp> = {
  smtp: /^220[ -]/,
  lmtp: /^220[ -]/,
  imap: /^\* OK/,
  pop3: /^\+OK/,
  managesieve: /^"/,
};

/** Every `listen` address under a section of runtime.yaml ("0.0.0.0:25" …), as ports. */
function listenPorts(section: unknown): number[] {
  const ports: number[] = [];
  const walk = (v: unknown, key: string): void => {
    if (typeof v === "string" && key === "listen") ports.push(Number(v.split(":").pop()));
    else if (Array.isArray(v)) for (const x of v) walk(x, key);
    else if (v && typeof v === "object") for (const [k, x] of Object.entries(v)) walk(x, k);
  };
  walk(section, "");
  return ports.filter((p) => Number.isInteger(p) && p > 0);
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ""}`);
}

/** When each long-running service last started (a restart changes it). */
const STARTED =
  "systemctl show -p ActiveEnterTimestampMonotonic --value heartbeat slapd " +
  "$(systemctl list-units 'mailinfra-*' --plain --no-legend | awk '{print $1}') 2>/dev/null | paste -sd,";

/** The DNs in a directory server's database, read with slapcat (safe on a running mdb). */
async function ldapDns(h: HostName): Promise<string[]> {
  const out = await sh(h, "slapcat -f /etc/ldap/slapd.conf 2>/dev/null | grep '^dn:' | sort");
  return out.split("\n").filter(Boolean);
}

/** mailinfra-* units installed on a host (unit files, loaded or not): name → ActiveState. */
async function runtimeUnits(h: HostName): Promise<Map<string, string>> {
  const out = await sh(
    h,
    "for u in $(systemctl list-unit-files 'mailinfra-*' --no-legend --no-pager | awk '{print $1}'); do " +
      'echo "$u $(systemctl is-active "$u" || true)"; done',
  );
  return new Map(
    out
      .split("\n")
      .filter(Boolean)
      .map((l) => l.split(" ") as [string, string]),
  );
}

/** TLS certificate of the VIP's IMAPS port as openssl s_client sees it (SHA-256 fingerprint line). */
async function vipCertificate(): Promise<string> {
  return servedCertificate(`${topology.vip}:993 -servername imap.lab.example`);
}

/** The certificate a server presents (`s_client` arguments), as its SHA-256 fingerprint line. */
async function servedCertificate(connectArgs: string): Promise<string> {
  const r = await run("sh", [
    "-c",
    `openssl s_client -connect ${connectArgs} </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256`,
  ]);
  return r.stdout.trim();
}

/** mailinfra-* units (and heartbeat, slapd) of a host → when each last started (a restart changes it). */
async function unitStarts(h: HostName): Promise<Record<string, string>> {
  const out = await sh(
    h,
    "for u in heartbeat slapd $(systemctl list-units 'mailinfra-*' --all --plain --no-legend | awk '{print $1}'); do " +
      'echo "$u $(systemctl show -p ActiveEnterTimestampMonotonic --value "$u" 2>/dev/null)"; done',
  );
  return Object.fromEntries(out.split("\n").map((l) => l.split(" ") as [string, string]));
}

/** Runs a shell script locally (openssl in a temp dir); fails with its output on a non-zero exit. */
async function local(cmd: string, cwd: string): Promise<string> {
  const r = await run("sh", ["-c", cmd], { allowFail: true, cwd });
  if (r.code !== 0) throw new Error(`${cmd}: exit ${r.code}: ${r.stderr || r.stdout}`);
  return r.stdout.trim();
}

/**
 * `openssl s_client` against the test CA only, the name checked too; returns the
 * served certificate's fingerprint line. Fails when the chain or the name does not verify.
 */
async function verifiedCertificate(ca: string, connectArgs: string, name: string): Promise<string> {
  const r = await run(
    "sh",
    [
      "-c",
      `openssl s_client -connect ${connectArgs} -verify_return_error -CAfile ${ca} -verify_hostname ${name} </dev/null 2>&1 >"$0.out"; ` +
        'rc=$?; grep -E "^Verify return code|verify error" "$0.out"; ' +
        'openssl x509 -in "$0.out" -noout -fingerprint -sha256; rm -f "$0.out"; exit $rc',
      join(ca, "..", `s_client-${randomBytes(4).toString("hex")}`),
    ],
    { allowFail: true },
  );
  expect(r.stdout, `${connectArgs} (${name}): ${r.stderr}`).toContain("Verify return code: 0 (ok)");
  expect(r.code, `${connectArgs} (${name}): ${r.stdout}${r.stderr}`).toBe(0);
  return /^sha256 Fingerprint=.*$/m.exec(r.stdout)?.[0] ?? "";
}

/** Resolves once host:port accepts a TCP connection (a restarted service binds a moment after it is "active"). */
function accepts(host: string, port: number): Promise<true | undefined> {
  return new Promise((resolve) => {
    const socket = connect({ host, port, timeout: 2000 });
    const done = (v: true | undefined) => {
      socket.destroy();
      resolve(v);
    };
    socket.on("connect", () => done(true));
    socket.on("timeout", () => done(undefined));
    socket.on("error", () => done(undefined));
  });
}

/** TLS-serving services (a new certificate restarts these, nothing else). */
const TLS_SERVICES = ["smtp", "imap", "pop3", "managesieve"];

/** A Postfix header_checks rule (regexp table) the lab adds on a re-apply. */
const PROBE_RULE = "/^Subject:.*lab-reject-probe/ REJECT no probes here";
/** Writes the lab stack with one more header_checks rule to dir (a copy: stacks/ stays as it is). */
function probeStack(dir: string): string {
  const doc = parse(readFileSync(LAB_STACK_FILE, "utf8")) as {
    config: Record<string, Record<string, unknown>>;
  };
  doc.config["mailinfra:filtering"] = { ...doc.config["mailinfra:filtering"], headerChecks: [PROBE_RULE] };
  const stackFile = join(dir, "Pulumi.lab.yaml");
  writeFileSync(stackFile, stringify(doc));
  return stackFile;
}
/** Set once the MX hosts run with PROBE_RULE. */
let headerChecksOn = false;

const MAIL_CLIENT = join(REPO_ROOT, "test/lab/mail-client.py");
const RUN_TAG = `${Date.now()}`;
const LOGIN = "labuser";
const MAILBOX = "labuser@lab.example";
const PASSWORD = randomBytes(12).toString("base64url");
/** Subjects of every message the tests delivered (the failover reads them all again). */
const delivered: string[] = [];

/** python3 test/lab/mail-client.py …: smtplib/imaplib/poplib; the password in its environment only. */
async function mailClient(args: string[]): Promise<{ refused?: unknown; subjects?: string[] }> {
  const r = await run("python3", [MAIL_CLIENT, ...args], {
    allowFail: true,
    env: { ...process.env, LC_ALL: "C", MAIL_USER: LOGIN, MAIL_PASSWORD: PASSWORD },
  });
  if (r.code !== 0)
    throw new Error(
      `mail-client ${args.join(" ")}: ${(r.stderr || r.stdout).trim().split("\n").slice(-3).join(" | ")}`,
    );
  return JSON.parse(r.stdout.trim().split("\n").pop() ?? "{}");
}

/** Waits until the mailbox (read with `args`) holds every subject. */
async function expectMailbox(args: string[], subjects: readonly string[]): Promise<void> {
  const got = await waitFor(
    `${subjects.join(", ")} over ${args.join(" ")}`,
    async () => {
      const r = await mailClient(args);
      return subjects.every((x) => r.subjects?.includes(x)) ? r.subjects : undefined;
    },
    45_000,
  );
  expect(got).toEqual(expect.arrayContaining([...subjects]));
}

/** RFC 2307 {SSHA}: base64(SHA-1(password + salt) + salt); the directory never holds the clear text. */
function ssha(password: string): string {
  const salt = randomBytes(8);
  const digest = createHash("sha1").update(password).update(salt).digest();
  return `{SSHA}${Buffer.concat([digest, salt]).toString("base64")}`;
}

/** The test account, added once on the LDAP provider (root over ldapi://, the LDIF on stdin). */
let accountOnce: Promise<void> | undefined;
function testAccount(): Promise<void> {
  accountOnce ??= (async () => {
    const conf = await sh("ldap1", "cat /etc/ldap/slapd.conf");
    const suffix = /^suffix\s+"([^"]+)"/m.exec(conf)?.[1];
    expect(suffix).toBeTruthy();
    const dn = `uid=${LOGIN},ou=people,${suffix}`;
    const ldif = [
      `dn: ${dn}`,
      "objectClass: inetOrgPerson",
      "objectClass: inetLocalMailRecipient",
      `uid: ${LOGIN}`,
      "cn: Lab User",
      "sn: User",
      `mail: ${MAILBOX}`,
      `mailLocalAddress: ${MAILBOX}`,
      `userPassword: ${ssha(PASSWORD)}`,
      "",
    ].join("\n");
    await sh("ldap1", "ldapadd -Q -Y EXTERNAL -H ldapi:/// >/dev/null", ldif);
    // The MX read the replica first: wait for it there.
    await waitFor(
      "the account on the replica",
      async () => ((await ldapDns("ldap2")).includes(`dn: ${dn}`) ? true : undefined),
      15_000,
    );
  })();
  return accountOnce;
}

describe.skipIf(!existsSync(PROGRAM)).sequential("the lab stack deployed by index.ts", () => {
  let deployOut = "";
  let deployMs = 0;

  let unlock: (() => void) | undefined;

  beforeAll(async () => {
    unlock = await labLock();
    const d = await lab(["down"]);
    expect(d.code, d.out).toBe(0);
    const t0 = Date.now();
    const r = await lab(["deploy", ...programArgs]);
    deployMs = Date.now() - t0;
    deployOut = r.out;
    console.log(`lab deploy from nothing: ${(deployMs / 1000).toFixed(1)} s`);
    // Not asserted here: the first test shows the applier's summary if it failed,
    // and the others still check what did come up.
  });

  afterAll(async () => {
    const r = await lab(["down"]);
    if (r.code !== 0) console.error(r.out);
    unlock?.();
    expect(leftovers()).toEqual([]);
  });

  it("applies every step and says how to reach the system", () => {
    expect(deployOut).toMatch(/apply: (\d+) of \1 steps done/);
    const report = lastReport();
    expect(report.failed).toEqual([]);
    expect(report.skipped).toEqual([]);
    expect(report.programErrors).toEqual([]);
    expect(report.done).toBe(report.total);
    expect(deployOut).toContain("The lab is deployed");
    expect(deployOut).toContain(topology.vip);
    // The role services this runtime build lacks are named, per host, in the output and the log.
    const built = new Set(Object.keys(SERVICES));
    const services = report.outputs?.services as Record<string, { runs: string[]; notInThisBuild: string[] }>;
    expect(Object.keys(services ?? {}).sort()).toEqual([...HOST_NAMES].sort());
    const missing = new Set(Object.values(services).flatMap((x) => x.notInThisBuild));
    for (const s of missing) expect(built.has(s), s).toBe(false);
    for (const x of Object.values(services)) for (const s of x.runs) expect(built.has(s), s).toBe(true);
    if (missing.size > 0) {
      expect(deployOut).toContain("not in this runtime build (not installed, not started):");
      for (const s of missing) expect(deployOut).toMatch(new RegExp(`^ {2}\\S+ +.*\\b${s}\\b`, "m"));
    }
  });

  it("every host answers SSH", async () => {
    const names = await Promise.all(HOST_NAMES.map((h) => sh(h, "hostname")));
    expect(names).toEqual([...HOST_NAMES]);
  });

  it("the SAN is XFS and mounted on the active store only", async () => {
    const { active, passive, mounts } = await activeStore();
    expect(mounts.filter((m) => m !== "")).toHaveLength(1);
    expect(mounts[SAN_HOSTS.indexOf(active)]).toMatch(/ xfs$/);
    expect(await sh(passive, `findmnt -n -S ${SAN_DEVICE} || echo none`)).toBe("none");
    for (const h of SAN_HOSTS) expect(await sh(h, `blkid -o value -s TYPE ${SAN_DEVICE}`)).toBe("xfs");
  });

  it("the VIP answers on the active store", async () => {
    const { active, passive } = await activeStore();
    expect(await sh(active, "ip -4 -o addr show dev host0")).toContain(`${topology.vip}/`);
    expect(await sh(passive, "ip -4 -o addr show dev host0")).not.toContain(`${topology.vip}/`);
    expect(await sh(topology.vip, "hostname")).toBe(active);
  });

  it("heartbeat runs on both stores, with the same configuration and authkeys 0600", async () => {
    const files = "/etc/ha.d/ha.cf /etc/ha.d/haresources /etc/ha.d/authkeys /etc/ha.d/resource.d/mailinfra";
    const seen = await Promise.all(
      SAN_HOSTS.map((h) =>
        sh(h, `systemctl is-active heartbeat; stat -c '%a %U' /etc/ha.d/authkeys; cat ${files} | sha256sum`),
      ),
    );
    expect(seen[0]).toMatch(/^active\n600 root\n[0-9a-f]{64} {2}-$/);
    expect(seen[1]).toBe(seen[0]);
  });

  it("relay2, reached as labadmin, was deployed through sudo -n like the others", async () => {
    // The staging area belongs to the SSH user; what it installed belongs to root and the services.
    expect(await sh("relay2", "stat -c '%U %a' /var/lib/mailinfra-deploy")).toBe("labadmin 700");
    expect(
      await sh("relay2", `stat -c '%U %a' /etc/mailinfra/runtime.yaml /etc/mailinfra/secrets/* ${TLS_KEY}`),
    ).toMatch(/^root 640\n(mailinfra 600\n)+mailinfra 600$/);
    expect(await sh("relay2", "systemctl is-active mailinfra-smtp")).toBe("active");
    // sudo logged the deploy's commands as run by labadmin as root.
    const logged = await sh(
      "relay2",
      "{ journalctl -q --no-pager -t sudo 2>/dev/null; cat /var/log/auth.log 2>/dev/null; } | grep -c 'labadmin : .*USER=root ; COMMAND=/usr/bin/sh -c' || true",
    );
    // relay2's three commands (base, certificate, runtime install), each at least once.
    expect(Number(logged)).toBeGreaterThanOrEqual(3);
  });

  it("an entry added on the LDAP provider appears on the replica", async () => {
    const conf = await sh("ldap1", "cat /etc/ldap/slapd.conf");
    const suffix = /^suffix\s+"([^"]+)"/m.exec(conf)?.[1];
    const rootDn = /^rootdn\s+"([^"]+)"/m.exec(conf)?.[1];
    const secrets = JSON.parse(readFileSync(paths.secrets, "utf8")) as Record<string, string>;
    const pwKey = Object.keys(secrets).find((k) => /ldap.*(admin|root|manager)|(admin|root).*ldap/i.test(k));
    expect(
      suffix && rootDn && pwKey,
      `suffix ${suffix}, rootdn ${rootDn}, secret keys ${Object.keys(secrets)}`,
    ).toBeTruthy();
    const cn = `lab-probe-${Date.now()}`;
    const ldif = `dn: cn=${cn},${suffix}\nobjectClass: organizationalRole\ncn: ${cn}\n`;
    const pw = secrets[pwKey!]!;
    // The password travels on stdin into a 0600 file, never on a command line.
    await sh("ldap1", "umask 077; cat > /run/lab-probe.pw", pw);
    await sh(
      "ldap1",
      // StartTLS (-ZZ) against the LDAP hosts' CA: slapd refuses a simple bind in clear.
      `LDAPTLS_CACERT=${LDAP_CA_FILE} ldapadd -ZZ -x -H ldap://${addr("ldap1")} -D '${rootDn}' -y /run/lab-probe.pw; rc=$?; rm -f /run/lab-probe.pw; exit $rc`,
      ldif,
    );
    const t0 = Date.now();
    // Read the replica's own database (slapcat: no bind, no ACL in the way).
    await waitFor(
      "the entry on the replica",
      async () => ((await ldapDns("ldap2")).includes(`dn: cn=${cn},${suffix}`) ? true : undefined),
      15_000,
    );
    console.log(`LDAP replication: ${Date.now() - t0} ms`);
  });

  it("LDAP over TLS: ldapwhoami -ZZ from a mail host with its CA works; a simple bind without TLS is refused", async () => {
    // mx1's own service account and bind password file, the CA the deployer installed there.
    const yaml = parse(await sh("mx1", "cat /etc/mailinfra/runtime.yaml")) as {
      ldap: { bindDn: string; bindPasswordFile: string; tls?: { ca?: string; startTls: boolean } };
    };
    expect(yaml.ldap.tls).toEqual({ ca: LDAP_CA_FILE_RUNTIME, startTls: true });
    const whoami = (flags: string, host: HostName) =>
      `LDAPTLS_CACERT=${LDAP_CA_FILE_RUNTIME} ldapwhoami ${flags} -x -H ldap://${addr(host)}/ -D '${yaml.ldap.bindDn}' -y ${yaml.ldap.bindPasswordFile} 2>&1`;
    for (const h of ["ldap1", "ldap2"] as const)
      expect(await sh("mx1", whoami("-ZZ", h)), h).toBe(`dn:${yaml.ldap.bindDn}`);
    // The same bind in clear: slapd answers 13 (confidentialityRequired), on the provider and the replica.
    for (const h of ["ldap1", "ldap2"] as const) {
      const r = await sh("mx1", `${whoami("", h)}; echo "exit $?"`);
      expect(r, h).toMatch(/Confidentiality required \(13\)/);
      expect(r, h).toMatch(/exit 13$/);
    }
    // A CA that did not sign the server's certificate: StartTLS fails, nothing is sent in clear.
    const wrong = await sh(
      "mx1",
      `LDAPTLS_CACERT=${TLS_CERT} ldapwhoami -ZZ -x -H ldap://${addr("ldap1")}/ -D '${yaml.ldap.bindDn}' -y ${yaml.ldap.bindPasswordFile} 2>&1; echo "exit $?"`,
    );
    expect(wrong).not.toMatch(/exit 0$/);
    expect(wrong).toMatch(/TLS|certificate/i);
  });

  it("each host's runtime services are running and healthy for its roles", async () => {
    // Exactly the services the deploy says each host runs (its roles' services this runtime build has).
    const services = lastReport().outputs?.services as Record<string, { runs: string[] }>;
    const { active, passive } = await activeStore();
    let greeted = 0;
    let healthy = 0;
    for (const h of HOST_NAMES) {
      const units = await runtimeUnits(h);
      const runs = services[h]?.runs ?? [];
      expect([...units.keys()].sort(), h).toEqual(runs.map((s) => `mailinfra-${s}.service`).sort());
      const yamlText = await sh(h, "cat /etc/mailinfra/runtime.yaml 2>/dev/null || true");
      const config = ((yamlText ? parse(yamlText) : {}) ?? {}) as Record<string, unknown>;
      const metrics = ((config.metrics ?? {}) as { services?: Record<string, string> }).services ?? {};
      for (const service of runs) {
        const unit = `mailinfra-${service}.service`;
        // Heartbeat runs the store's services on the active node only.
        if (h === passive) {
          expect(units.get(unit), `${h} ${unit}`).toBe("inactive");
          continue;
        }
        expect(units.get(unit), `${h} ${unit}`).toBe("active");
        // It answers on each address it listens on with its protocol's greeting.
        const target = h === active ? topology.vip : addr(h);
        for (const port of listenPorts(config[service])) {
          const line = await greeting(target, port);
          const expected = GREETINGS[service];
          if (expected) expect(line, `${h} ${service} on ${target}:${port}`).toMatch(expected);
          greeted++;
        }
        // And its own /healthz (metrics.services.<service>) says ok.
        const listen = metrics[service];
        expect(listen, `${h}: metrics.services.${service}`).toBeTruthy();
        const url = `http://${addr(h)}:${listen!.split(":").pop()}/healthz`;
        const r = await run("curl", ["-sS", "-m", "5", "-o", "-", "-w", " %{http_code}", url], {
          allowFail: true,
        });
        expect(r.stdout.trim(), `${h} ${service} ${url}: ${r.stderr}`).toMatch(/ 200$/);
        healthy++;
      }
      // The units carry the libuv pool the runtime's benchmarks need.
      for (const [service, size] of [
        ["imap", 64],
        ["lmtp", 64],
        ["pop3", 64],
        ["smtp", 32],
      ] as const)
        if (runs.includes(service))
          expect(await sh(h, `systemctl show -p Environment --value mailinfra-${service}.service`)).toContain(
            `UV_THREADPOOL_SIZE=${size}`,
          );
    }
    expect(greeted).toBeGreaterThan(0);
    expect(healthy).toBeGreaterThanOrEqual(7);
  });

  it("a re-apply changes nothing: no reformat, no duplicate entry, no restart", async () => {
    const { active } = await activeStore();
    const before = {
      uuid: await sh(active, `blkid -o value -s UUID ${SAN_DEVICE}`),
      started: await Promise.all(HOST_NAMES.map((h) => sh(h, STARTED))),
      entries: await Promise.all(["ldap1", "ldap2"].map((h) => ldapDns(h as HostName))),
    };
    const t0 = Date.now();
    // The same build: rebuilding could embed a newer commit and restart everything honestly.
    const r = await lab(["apply", "--no-build", ...programArgs]);
    console.log(`lab no-op re-apply: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    expect(await sh(active, `blkid -o value -s UUID ${SAN_DEVICE}`)).toBe(before.uuid);
    const after = await Promise.all(HOST_NAMES.map((h) => sh(h, STARTED)));
    expect(after).toEqual(before.started);
    activeOnce = undefined;
    expect((await activeStore()).active).toBe(active);
    // No entry added twice (a duplicate would fail ldapadd, or show up as a second DN).
    const entries = await Promise.all(["ldap1", "ldap2"].map((h) => ldapDns(h as HostName)));
    expect(entries).toEqual(before.entries);
    for (const list of entries) expect(new Set(list).size).toBe(list.length);
    // Last, so the checks above say what a failing re-apply did or did not change.
    expect(r.code, r.out).toBe(0);
  });

  it("a changed setting restarts only the services that use it (header_checks: MX; a new certificate: relay1)", async () => {
    const before = await Promise.all(HOST_NAMES.map((h) => sh(h, STARTED)));
    // relay1's certificate no longer matches its names: the apply makes a new one,
    // which relay1's services must then serve (restarted), mode 0600.
    const oldCert = await sh("relay1", `openssl x509 -in ${TLS_CERT} -noout -fingerprint -sha256`);
    expect(await servedCertificate(`${addr("relay1")}:587 -starttls smtp`)).toBe(oldCert);
    await sh("relay1", "rm /etc/mailinfra/tls/names");
    const dir = mkdtempSync(join(tmpdir(), "mailinfra-lab-stack-"));
    const stackFile = probeStack(dir);
    try {
      const r = await lab(["apply", "--no-build", "--stack-file", stackFile, ...programArgs]);
      expect(r.code, r.out).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const after = await Promise.all(HOST_NAMES.map((h) => sh(h, STARTED)));
    const restarted = HOST_NAMES.filter((_, i) => after[i] !== before[i]);
    expect(restarted).toEqual(["mx1", "mx2", "relay1"]);
    const newCert = await sh("relay1", `openssl x509 -in ${TLS_CERT} -noout -fingerprint -sha256`);
    expect(newCert).not.toBe(oldCert);
    expect(await sh("relay1", `stat -c '%a %U' ${TLS_CERT} ${TLS_KEY}`)).toBe("600 mailinfra\n600 mailinfra");
    expect(await servedCertificate(`${addr("relay1")}:587 -starttls smtp`)).toBe(newCert);
    for (const h of ["mx1", "mx2"] as const) {
      expect(await sh(h, "cat /etc/mailinfra/maps/header_checks")).toBe(PROBE_RULE);
      expect(await sh(h, "systemctl is-active mailinfra-smtp")).toBe("active");
    }
    headerChecksOn = true;
  });

  it("both stores serve ONE certificate for the VIP's names, the one seen on the VIP", async () => {
    const cert = (h: HostName) =>
      sh(
        h,
        `openssl x509 -in ${TLS_CERT} -noout -fingerprint -sha256; openssl pkey -in ${TLS_KEY} -pubout | sha256sum; stat -c %a ${TLS_CERT} ${TLS_KEY}`,
      );
    const [a, b] = await Promise.all(SAN_HOSTS.map(cert));
    expect(a).toMatch(/Fingerprint=[0-9A-F:]{95}\n[0-9a-f]{64} {2}-\n600\n600$/);
    expect(b).toBe(a);
    const names = await sh("store2", `openssl x509 -in ${TLS_CERT} -noout -subject -ext subjectAltName`);
    expect(names).toContain("CN = imap.lab.example");
    for (const n of ["DNS:imap.lab.example", "DNS:pop.lab.example", `IP Address:${topology.vip}`])
      expect(names).toContain(n);
    expect(await vipCertificate()).toBe(a!.split("\n")[0]);
  });

  it("a certificate and key given as stack secrets are served on the VIP, the relays, the MX and slapd; TLS services, and for the new LDAP CA LMTP and slapd, restart", async () => {
    const z = "lab.example";
    const { active, passive } = await activeStore();
    const dir = mkdtempSync(join(tmpdir(), "mailinfra-lab-tls-"));
    try {
      // A test CA, and one certificate for the lab's service names, signed by it.
      const dns = [`imap.${z}`, `pop.${z}`, `mail.${z}`, ...HOST_NAMES.flatMap((h) => [`${h}.${z}`, h])];
      const ips = [topology.vip, ...HOST_NAMES.map(addr)];
      writeFileSync(
        join(dir, "ext.cnf"),
        [
          "basicConstraints = critical, CA:FALSE",
          "keyUsage = critical, digitalSignature, keyEncipherment",
          "extendedKeyUsage = serverAuth",
          `subjectAltName = ${[...dns.map((n) => `DNS:${n}`), ...ips.map((i) => `IP:${i}`)].join(", ")}`,
          "",
        ].join("\n"),
      );
      await local(
        [
          "umask 077",
          "openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 2 -subj '/CN=mailinfra lab test CA' " +
            "-addext 'basicConstraints=critical,CA:TRUE' -addext 'keyUsage=critical,keyCertSign,cRLSign' " +
            "-keyout ca.key -out ca.pem 2>/dev/null",
          `openssl req -newkey rsa:2048 -nodes -sha256 -subj '/CN=imap.${z}' -keyout key.pem -out req.csr 2>/dev/null`,
          "openssl x509 -req -sha256 -days 2 -in req.csr -CA ca.pem -CAkey ca.key -CAcreateserial -extfile ext.cnf -out cert.pem 2>/dev/null",
        ].join(" && "),
        dir,
      );
      const ca = join(dir, "ca.pem");
      const certificate = readFileSync(join(dir, "cert.pem"), "utf8");
      const privateKey = readFileSync(join(dir, "key.pem"), "utf8");
      const given = await local("openssl x509 -in cert.pem -noout -fingerprint -sha256", dir);
      // Before: the VIP serves the store pair's self-signed certificate, which the test CA does not vouch for.
      expect(await vipCertificate()).not.toBe(given);
      // The two secrets reach the applier in a 0600 file: only its path is on a command line.
      const secretsFile = join(dir, "secrets.json");
      // With the test CA: the services and the replica verify slapd (which now serves the given pair) against it.
      const tlsCaCertificate = readFileSync(ca, "utf8");
      writeFileSync(
        secretsFile,
        JSON.stringify({ tlsCertificate: certificate, tlsPrivateKey: privateKey, tlsCaCertificate }),
        {
          mode: 0o600,
        },
      );
      const before = Object.fromEntries(
        await Promise.all(HOST_NAMES.map(async (h) => [h, await unitStarts(h)])),
      );
      const t0 = Date.now();
      // The stack the MX run with now (header_checks of the previous test), so that only the certificate changes.
      const stack = headerChecksOn ? ["--stack-file", probeStack(dir)] : [];
      const r = await lab(["apply", "--no-build", ...stack, "--secrets-file", secretsFile, ...programArgs]);
      console.log(`lab re-apply with a given certificate: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      expect(r.code, r.out).toBe(0);
      // Never printed: not the key, not the certificate (each PEM body line is long and unique).
      for (const line of [...privateKey.split("\n"), ...certificate.split("\n")].filter(
        (l) => l.length >= 40,
      ))
        expect(r.out).not.toContain(line);
      expect(readFileSync(REPORT_FILE, "utf8")).not.toContain(privateKey.split("\n")[1]!);

      // The services that serve TLS restarted, where they run (not the passive store's); the LDAP CA
      // every service checks slapd against changed too, so LMTP restarts with them, and slapd
      // restarts with its new certificate.
      const services = lastReport().outputs?.services as Record<string, { runs: string[] }>;
      const after = Object.fromEntries(
        await Promise.all(HOST_NAMES.map(async (h) => [h, await unitStarts(h)])),
      );
      const restarted = HOST_NAMES.flatMap((h) =>
        Object.keys(after[h]!)
          .filter((u) => after[h]![u] !== before[h]![u])
          .map((u) => `${h} ${u}`),
      );
      const expected = HOST_NAMES.flatMap((h) =>
        h === passive
          ? []
          : [
              ...(services[h]?.runs ?? []).map((s) => `${h} mailinfra-${s}.service`),
              ...(h.startsWith("ldap") ? [`${h} slapd`] : []),
            ],
      );
      expect(
        expected.filter(
          (x) => x.includes("mailinfra-") && !TLS_SERVICES.some((s) => x.endsWith(`-${s}.service`)),
        ),
      ).toEqual([`${active} mailinfra-lmtp.service`]);
      expect(restarted.sort()).toEqual(expected.sort());
      expect(restarted).toEqual(
        expect.arrayContaining(["mx1 mailinfra-smtp.service", `${active} mailinfra-imap.service`]),
      );

      // Installed, 0600, owned by the services' user, on every host that serves TLS (the passive store too).
      const tlsHosts = ["mx1", "mx2", "relay1", "relay2", "store1", "store2"] as const;
      const installed = await Promise.all(
        tlsHosts.map((h) =>
          sh(
            h,
            `stat -c '%a %U' ${TLS_CERT} ${TLS_KEY}; openssl x509 -in ${TLS_CERT} -noout -fingerprint -sha256`,
          ),
        ),
      );
      expect(installed).toEqual(tlsHosts.map(() => `600 mailinfra\n600 mailinfra\n${given}`));

      // The restarted services take a moment to bind after systemd calls them active.
      const ports: [string, number][] = [
        [topology.vip, 993],
        [topology.vip, 995],
        [addr("relay1"), 587],
        [addr("relay2"), 587],
        [addr("mx1"), 25],
        [addr("mx2"), 25],
      ];
      await Promise.all(ports.map(([h, p]) => waitFor(`${h}:${p} to accept`, () => accepts(h, p), 20_000)));

      // Served, and verified against the test CA with the service's name (all at once: each MX
      // holds its greeting a few seconds). A name the certificate lacks must fail the same check.
      const [wrong, ...served] = await Promise.all([
        run(
          "sh",
          [
            "-c",
            `openssl s_client -connect ${addr("mx1")}:25 -starttls smtp -verify_return_error -CAfile ${ca} -verify_hostname not-here.${z} </dev/null >/dev/null 2>&1`,
          ],
          { allowFail: true },
        ),
        verifiedCertificate(ca, `${topology.vip}:993 -servername imap.${z}`, `imap.${z}`),
        verifiedCertificate(ca, `${topology.vip}:995 -servername pop.${z}`, `pop.${z}`),
        verifiedCertificate(ca, `${addr("relay1")}:587 -starttls smtp`, `mail.${z}`),
        verifiedCertificate(ca, `${addr("relay2")}:587 -starttls smtp`, `relay2.${z}`),
        verifiedCertificate(ca, `${addr("mx1")}:25 -starttls smtp`, `mx1.${z}`),
        verifiedCertificate(ca, `${addr("mx2")}:25 -starttls smtp`, `mx2.${z}`),
        verifiedCertificate(ca, `${addr("ldap1")}:389 -starttls ldap`, `ldap1.${z}`),
        verifiedCertificate(ca, `${addr("ldap2")}:389 -starttls ldap`, `ldap2.${z}`),
      ]);
      expect(served).toEqual(Array(served.length).fill(given));
      expect(wrong.code).not.toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a message sent to each MX is readable over IMAP and POP3 on the VIP", async () => {
    await testAccount();
    const subjects = (["mx1", "mx2"] as const).map((h) => `via-${h}-${RUN_TAG}`);
    // Both at once: each MX holds a new client's greeting for a few seconds (early-talker check).
    const sent = await Promise.all(
      (["mx1", "mx2"] as const).map((h, i) =>
        mailClient(["send", addr(h), "25", "someone@example.org", MAILBOX, subjects[i]!]),
      ),
    );
    for (const r of sent) expect(r.refused).toEqual({});
    delivered.push(...subjects);
    // The header_checks rule the previous test added rejects at DATA, on each MX.
    if (headerChecksOn)
      for (const h of ["mx1", "mx2"] as const)
        await expect(
          mailClient(["send", addr(h), "25", "someone@example.org", MAILBOX, `lab-reject-probe-${h}`]),
        ).rejects.toThrow(/\b5\d\d\b.*no probes here/);
    const vip = topology.vip;
    await expectMailbox(["imap", vip, "143"], subjects);
    await expectMailbox(["imap", vip, "993", "--ssl"], subjects);
    await expectMailbox(["pop3", vip, "110"], subjects);
    await expectMailbox(["pop3", vip, "995", "--ssl"], subjects);
  });

  it("submission on each relay (587, STARTTLS + AUTH) delivers to the same mailbox", async () => {
    await testAccount();
    const subjects = (["relay1", "relay2"] as const).map((h) => `submitted-${h}-${RUN_TAG}`);
    for (const [i, h] of (["relay1", "relay2"] as const).entries()) {
      const r = await mailClient([
        "send",
        addr(h),
        "587",
        MAILBOX,
        MAILBOX,
        subjects[i]!,
        "--starttls",
        "--auth",
      ]);
      expect(r.refused, h).toEqual({});
      delivered.push(subjects[i]!);
    }
    await expectMailbox(["imap", topology.vip, "143", "--starttls"], subjects);
    // Without AUTH the relay's submission port takes nothing.
    await expect(
      mailClient(["send", addr("relay1"), "587", MAILBOX, MAILBOX, `no-auth-${RUN_TAG}`, "--starttls"]),
    ).rejects.toThrow(/5\d\d/);
  });

  it("after a power cut of the active store, the other holds the VIP, the SAN and the mail, same certificate", async () => {
    expect(delivered.length, "the mail-flow tests delivered mail first").toBeGreaterThan(0);
    const { active, passive } = await activeStore();
    const certBefore = await vipCertificate();
    const k = await lab(["kill", active]);
    expect(k.code, k.out).toBe(0);
    const t0 = Date.now();
    await waitFor(
      `the VIP on ${passive}`,
      async () => ((await sh(topology.vip, "hostname")) === passive ? true : undefined),
      60_000,
    );
    expect(await sh(passive, `findmnt -n -S ${SAN_DEVICE} -o TARGET,FSTYPE`)).toBe("/srv/mail xfs");
    await expectMailbox(["imap", topology.vip, "143"], delivered);
    console.log(`failover after a power cut: mail readable on the VIP after ${Date.now() - t0} ms`);
    expect(await vipCertificate()).toBe(certBefore);
    // The node comes back as the passive one (auto_failback off): the VIP stays.
    const st = await lab(["start", active]);
    expect(st.code, st.out).toBe(0);
    await waitFor(
      `heartbeat on ${active} again`,
      async () => ((await sh(active, "systemctl is-active heartbeat")) === "active" ? true : undefined),
      60_000,
    );
    expect(await sh(topology.vip, "hostname")).toBe(passive);
    expect(await sh(active, `findmnt -n -S ${SAN_DEVICE} || echo none`)).toBe("none");
  });
});
