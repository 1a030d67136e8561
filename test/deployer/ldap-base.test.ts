// The LDAP base step, run for real against a slapd started from the rendered
// provider slapd.conf on loopback: loads the entries once, a re-run changes
// nothing, a run after the record was lost only tolerates "Already exists"
// (no duplicates), and the service accounts bind with their derived passwords.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  baseEntriesLdif,
  baseScript,
  passwordRefreshLdif,
  REPLICATION_ACCOUNT,
  replicaSyncScript,
  servicePassword,
} from "../../components/ldap.js";
import { derivedSalt, renderSlapdConf, serviceDn, sshaHash } from "../../components/render/index.js";
import { templateUrl } from "../../components/render/template.js";

const canRun =
  (await execa("sh", ["-c", "command -v slapd && command -v ldapadd"], { reject: false })).exitCode === 0;

const SUFFIX = "dc=test,dc=example";
const ROOT = `cn=admin,${SUFFIX}`;
const ADMIN = "admin-pw-for-the-test";
const MASTER = "service-master-secret-for-the-test";
const REPL = "replication-pw-for-the-test";
const ACCOUNTS = ["mx", "store"];

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** What the provider's and the replica's slapd.conf share. */
const slapdCommon = () => ({
  suffix: SUFFIX,
  rootDn: ROOT,
  serviceDns: ACCOUNTS.map((a) => serviceDn(SUFFIX, a)),
  replicationDn: serviceDn(SUFFIX, REPLICATION_ACCOUNT),
  mailinfraSchemaPath: templateUrl("ldap/mailinfra.schema").pathname,
  logLevel: "none" as const,
});
describe.skipIf(!canRun)("LDAP base entries against a real slapd", () => {
  let dir: string;
  let uri: string;
  let slapd: ChildProcess | undefined;
  let replica: ChildProcess | undefined;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "mailinfra-ldap-"));
    await mkdir(join(dir, "db"));
    await mkdir(join(dir, "stage"), { mode: 0o700 });
    const conf = renderSlapdConf({
      ...slapdCommon(),
      role: "provider",
      rootPasswordHash: sshaHash(ADMIN, derivedSalt("t", ROOT)),
      directory: join(dir, "db"),
      pidFile: join(dir, "slapd.pid"),
      argsFile: join(dir, "slapd.args"),
    });
    await writeFile(join(dir, "slapd.conf"), conf, { mode: 0o600 });
    uri = `ldap://127.0.0.1:${await freePort()}/`;
    slapd = spawn("slapd", ["-f", join(dir, "slapd.conf"), "-h", uri, "-d", "0"], { stdio: "ignore" });
    for (let i = 0; i < 100; i++) {
      const r = await execa("ldapsearch", ["-x", "-H", uri, "-s", "base", "-b", ""], { reject: false });
      if (r.exitCode !== 255) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const ldif = baseEntriesLdif(
      { suffix: SUFFIX, organization: "Test", serviceAccounts: ACCOUNTS, saltSeed: "t" },
      MASTER,
      REPL,
    );
    await writeFile(join(dir, "stage", "base.ldif"), ldif, { mode: 0o600 });
    await writeFile(join(dir, "stage", "passwords.ldif"), passwordRefreshLdif(ldif), { mode: 0o600 });
    await writeFile(join(dir, "stage", "ldap-admin.pw"), ADMIN, { mode: 0o600 });
  }, 60_000);

  afterAll(async () => {
    if (slapd?.pid) process.kill(slapd.pid, "SIGTERM");
    if (replica?.pid) process.kill(replica.pid, "SIGTERM");
    await new Promise((r) => setTimeout(r, 300));
    await rm(dir, { recursive: true, force: true });
  });

  const runBase = () =>
    execa("sh", ["-c", baseScript(ROOT, { uri, dir: join(dir, "stage") })], { reject: false });
  const count = async () => {
    const pw = join(dir, "stage", "ldap-admin.pw");
    const r = await execa("ldapsearch", ["-x", "-H", uri, "-D", ROOT, "-y", pw, "-b", SUFFIX, "-LLL", "dn"]);
    return r.stdout.split("\n").filter((l) => l.startsWith("dn:")).length;
  };

  it("loads the base entries and accounts once", async () => {
    const first = await runBase();
    expect(first.exitCode, first.stderr).toBe(0);
    expect(first.stdout).toBe("base entries loaded");
    // base, 3 OUs, 2 services, the replicator
    expect(await count()).toBe(7);
    const again = await runBase();
    expect(again.stdout).toBe("base entries unchanged");
  });

  it("tolerates entries that exist already (no duplicates) when re-run from scratch", async () => {
    await rm(join(dir, "stage", "base.ldif.applied"));
    const r = await runBase();
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toBe("base entries loaded");
    expect(await count()).toBe(7);
  });

  it("lets each service account bind with its derived password", async () => {
    for (const a of ACCOUNTS) {
      const pwFile = join(dir, `bind-${a}`);
      await writeFile(pwFile, servicePassword(MASTER, a), { mode: 0o600 });
      const r = await execa("ldapwhoami", ["-x", "-H", uri, "-D", serviceDn(SUFFIX, a), "-y", pwFile], {
        reject: false,
      });
      expect(r.exitCode, r.stderr).toBe(0);
      expect(r.stdout).toBe(`dn:${serviceDn(SUFFIX, a)}`);
    }
  });

  it("a replica configured from the rendered replica slapd.conf receives the entries (the sync check passes)", async () => {
    await mkdir(join(dir, "rdb"));
    const conf = renderSlapdConf({
      ...slapdCommon(),
      role: "replica",
      rid: 1,
      providerUri: uri,
      replicationPassword: REPL,
      directory: join(dir, "rdb"),
      pidFile: join(dir, "replica.pid"),
      argsFile: join(dir, "replica.args"),
    });
    const confPath = join(dir, "replica.conf");
    await writeFile(confPath, conf, { mode: 0o600 });
    const replicaUri = `ldap://127.0.0.1:${await freePort()}/`;
    replica = spawn("slapd", ["-f", confPath, "-h", replicaUri, "-d", "0"], { stdio: "ignore" });
    const r = await execa("sh", ["-c", `set -eu\n${replicaSyncScript(SUFFIX, confPath)}`], { reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toBe("replica in sync");
  }, 90_000);

  it("fails clearly on a wrong admin password, changing nothing", async () => {
    await rm(join(dir, "stage", "base.ldif.applied"));
    await writeFile(join(dir, "stage", "ldap-admin.pw"), "wrong-password", { mode: 0o600 });
    const r = await runBase();
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain("mailinfra: loading the base entries failed");
    expect(r.stderr).toContain("Invalid credentials (49)");
    await writeFile(join(dir, "stage", "ldap-admin.pw"), ADMIN, { mode: 0o600 });
    expect(await count()).toBe(7);
  });
});
