/**
 * The rendered provider and replica configs, run for real: two slapd processes
 * on loopback, the rendered base LDIF loaded with ldapadd, then the ACLs and
 * syncrepl exercised with OpenLDAP's own clients (ldapsearch, ldapmodify,
 * ldappasswd). Passwords travel in files (-y/-T), never on a command line.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  LDAPI_ROOT_DN,
  renderBaseLdif,
  renderSlapdConf,
  serviceDn,
  sshaHash,
  userDn,
} from "../../components/render/index.js";
import { FAKE, removeTempDirs, SUFFIX, tempDir } from "./fixtures.js";
import { baseLdif, MAILINFRA_SCHEMA, provider, replica } from "./ldap-fixtures.js";

const dir = tempDir("slapd");
const daemons: ChildProcess[] = [];
let providerUri = "";
let replicaUri = "";

/** A password file for -y / -T: the tools read the whole file, so no trailing newline. */
function pwFile(name: string, password: string): string {
  const path = join(dir, `${name}.pw`);
  writeFileSync(path, password, { mode: 0o600 });
  return path;
}

const rootDn = provider.rootDn;
const mxDn = serviceDn(SUFFIX, "mx");
const alice = userDn(SUFFIX, "alice");
const bob = userDn(SUFFIX, "bob");
const pw = {
  root: pwFile("root", FAKE.rootPassword),
  mx: pwFile("mx", FAKE.servicePassword),
  alice: pwFile("alice", `${FAKE.userPassword}-alice`),
  aliceNew: pwFile("alice-new", `${FAKE.userPassword}-alice-2`),
  bob: pwFile("bob", `${FAKE.userPassword}-bob`),
  replicator: pwFile("replicator", FAKE.replicationPassword),
};

interface Result {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs an OpenLDAP client tool with a simple bind (`bindDn` undefined: anonymous). */
function ldap(
  tool: string,
  uri: string,
  bindDn: string | undefined,
  pwPath: string | undefined,
  args: string[],
  input?: string,
): Result {
  const auth = bindDn === undefined ? [] : ["-D", bindDn, "-y", pwPath!];
  const r = spawnSync(tool, ["-x", "-H", uri, "-o", "nettimeout=5", ...auth, ...args], {
    encoding: "utf8",
    input: input ?? "",
    timeout: 15_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function search(
  uri: string,
  bindDn: string | undefined,
  pwPath: string | undefined,
  base: string,
  ...rest: string[]
): Result {
  return ldap("ldapsearch", uri, bindDn, pwPath, ["-LLL", "-b", base, ...rest]);
}

async function freePort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => resolve(typeof address === "object" && address !== null ? address.port : 0));
    });
  });
}

async function until<T>(what: string, timeoutMs: number, probe: () => T | undefined): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function startSlapd(name: string, conf: string, extraListeners: string[] = []): Promise<string> {
  const home = join(dir, name);
  mkdirSync(join(home, "db"), { recursive: true });
  const file = join(home, "slapd.conf");
  writeFileSync(file, conf, { mode: 0o600 });
  const port = await freePort();
  const uri = `ldap://127.0.0.1:${port}/`;
  // -d 0: stay in the foreground so the test owns the PID and stops it.
  const listeners = [uri, ...extraListeners].join(" ");
  const child = spawn("slapd", ["-f", file, "-h", listeners, "-d", "0"], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  daemons.push(child);
  await until(`slapd ${name} on ${uri} (${stderr})`, 10_000, () => {
    if (child.exitCode !== null) throw new Error(`slapd ${name} exited ${child.exitCode}: ${stderr}`);
    // Any LDAP answer (the replica has no rootpw: 49) means it listens; 255 is "can't contact".
    const status = ldap("ldapwhoami", uri, rootDn, pw.root, []).status;
    return status !== null && status !== 255 ? true : undefined;
  });
  return uri;
}

function paths(name: string) {
  const home = join(dir, name);
  return {
    directory: join(home, "db"),
    pidFile: join(home, "slapd.pid"),
    argsFile: join(home, "slapd.args"),
    mailinfraSchemaPath: MAILINFRA_SCHEMA,
    logLevel: "none",
  };
}

function userLdif(uid: string, password: string): string {
  return [
    `dn: ${userDn(SUFFIX, uid)}`,
    "objectClass: inetOrgPerson",
    "objectClass: inetLocalMailRecipient",
    "objectClass: mailinfraAccount",
    `uid: ${uid}`,
    `cn: ${uid}`,
    `sn: ${uid}`,
    `mail: ${uid}@example.org`,
    `mailLocalAddress: ${uid}@example.org`,
    `mailLocalAddress: ${uid}.alias@example.org`,
    "mailHost: store.example.org",
    "mailQuotaBytes: 1073741824",
    `userPassword: ${sshaHash(password)}`,
    "",
  ].join("\n");
}

/** Root over ldapi:/// with SASL EXTERNAL: no password at all (the rendered manage ACL). */
function external(tool: string, args: string[], input?: string): Result {
  const r = spawnSync(tool, ["-Q", "-Y", "EXTERNAL", "-H", ldapiUri, ...args], {
    encoding: "utf8",
    input: input ?? "",
    timeout: 15_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const asRoot = process.getuid?.() === 0;
const ldapiUri = `ldapi://${encodeURIComponent(join(dir, "provider.ldapi"))}`;

beforeAll(async () => {
  providerUri = await startSlapd("provider", renderSlapdConf({ ...provider, ...paths("provider") }), [
    ldapiUri,
  ]);
  const base = join(dir, "base.ldif");
  writeFileSync(base, renderBaseLdif(baseLdif), { mode: 0o600 });
  const users = [
    userLdif("alice", `${FAKE.userPassword}-alice`),
    userLdif("bob", `${FAKE.userPassword}-bob`),
  ].join("\n");
  // As the deploy does it: root over ldapi:///, no password (rootdn + password file otherwise).
  for (const [args, input] of [
    [["-f", base], undefined],
    [[], users],
  ] as const) {
    const r = asRoot
      ? external("ldapadd", [...args], input)
      : ldap("ldapadd", providerUri, rootDn, pw.root, [...args], input);
    expect(`${r.status} ${r.stderr}`).toBe("0 ");
  }
  replicaUri = await startSlapd("replica", renderSlapdConf({ ...replica, ...paths("replica"), providerUri }));
}, 60_000);

afterAll(async () => {
  for (const child of daemons) {
    if (child.exitCode !== null || child.pid === undefined) continue;
    const exited = new Promise((r) => child.once("exit", r));
    process.kill(child.pid, "SIGTERM");
    await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
    if (child.exitCode === null) process.kill(child.pid, "SIGKILL");
  }
  removeTempDirs();
});

describe("slapd provider + replica from the rendered configs", () => {
  it("replicates the base entries and users to the replica", async () => {
    await until("alice on the replica", 10_000, () =>
      search(replicaUri, mxDn, pw.mx, alice, "-s", "base", "uid").stdout.includes("uid: alice")
        ? true
        : undefined,
    );
  });

  it("a service DN reads any account by address, but never password hashes", () => {
    for (const uri of [providerUri, replicaUri]) {
      const r = search(
        uri,
        mxDn,
        pw.mx,
        SUFFIX,
        "(mailLocalAddress=bob.alias@example.org)",
        "mail",
        "mailHost",
        "mailQuotaBytes",
        "userPassword",
      );
      expect(r.status).toBe(0);
      expect(r.stdout).toContain(`dn: ${bob}`);
      expect(r.stdout).toContain("mail: bob@example.org");
      expect(r.stdout).toContain("mailQuotaBytes: 1073741824");
      expect(r.stdout).not.toContain("userPassword");
    }
  });

  it("a service DN cannot write", () => {
    const r = ldap(
      "ldapmodify",
      providerUri,
      mxDn,
      pw.mx,
      [],
      `dn: ${bob}\nchangetype: modify\nreplace: mail\nmail: evil@example.org\n`,
    );
    expect(r.status).toBe(50); // insufficientAccessRights
  });

  it("the replication DN reads everything, password hashes included, and writes nothing", () => {
    const replicator = provider.replicationDn;
    const r = search(providerUri, replicator, pw.replicator, SUFFIX, "(uid=bob)", "userPassword", "mail");
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(`dn: ${bob}`);
    expect(r.stdout).toMatch(/^userPassword:: /m);
    const services = search(
      providerUri,
      replicator,
      pw.replicator,
      `ou=services,${SUFFIX}`,
      "-s",
      "one",
      "dn",
    );
    expect(services.stdout).toContain(`dn: ${mxDn}`);
    const write = ldap(
      "ldapmodify",
      providerUri,
      replicator,
      pw.replicator,
      [],
      `dn: ${bob}\nchangetype: modify\nreplace: mail\nmail: evil@example.org\n`,
    );
    expect(write.status).toBe(50); // insufficientAccessRights
    // A service DN is no replication DN: it never sees the hashes (above) nor binds as one.
    expect(search(providerUri, replicator, pw.mx, SUFFIX, "-s", "base").status).toBe(49);
  });

  it("a user reads itself but not other users", () => {
    const self = search(providerUri, alice, pw.alice, alice, "-s", "base");
    expect(self.status).toBe(0);
    expect(self.stdout).toContain("mail: alice@example.org");
    const other = search(providerUri, alice, pw.alice, SUFFIX, "(uid=bob)");
    expect(other.stdout).not.toContain("bob");
    const whole = search(providerUri, alice, pw.alice, SUFFIX, "(objectClass=*)", "dn");
    expect(whole.stdout).not.toContain(bob);
    expect(whole.stdout).not.toContain("ou=services");
  });

  it("a user cannot change its own mail attributes", () => {
    const r = ldap(
      "ldapmodify",
      providerUri,
      alice,
      pw.alice,
      [],
      `dn: ${alice}\nchangetype: modify\nreplace: mailHost\nmailHost: elsewhere\n`,
    );
    expect(r.status).toBe(50);
  });

  it("anonymous clients may not bind or read", () => {
    const r = search(providerUri, undefined, undefined, SUFFIX, "(objectClass=*)");
    expect(r.status).not.toBe(0);
    expect(r.stdout).not.toContain("dn:");
    const wrong = search(providerUri, alice, pw.bob, alice, "-s", "base");
    expect(wrong.status).toBe(49); // invalidCredentials
  });

  it("a user changes its own password; the new one works on the replica too", async () => {
    const r = ldap("ldappasswd", providerUri, alice, pw.alice, ["-T", pw.aliceNew]);
    expect(`${r.status} ${r.stderr}`).toBe("0 ");
    expect(search(providerUri, alice, pw.aliceNew, alice, "-s", "base", "uid").status).toBe(0);
    expect(search(providerUri, alice, pw.alice, alice, "-s", "base", "uid").status).toBe(49);
    await until("alice's new password on the replica", 10_000, () =>
      search(replicaUri, alice, pw.aliceNew, alice, "-s", "base", "uid").status === 0 ? true : undefined,
    );
    // The hash is stored {SSHA} (password-hash), readable only by replication and root.
    const root = search(providerUri, rootDn, pw.root, alice, "-s", "base", "userPassword");
    expect(root.status).toBe(0);
    expect(root.stdout).toMatch(/userPassword:: /);
    expect(
      Buffer.from(root.stdout.split("userPassword:: ")[1]!.replace(/\n /g, "").trim(), "base64").toString(),
    ).toMatch(/^\{SSHA\}/);
  });

  it("an entry added on the provider appears on the replica", async () => {
    const started = Date.now();
    const r = ldap(
      "ldapadd",
      providerUri,
      rootDn,
      pw.root,
      [],
      userLdif("carol", `${FAKE.userPassword}-carol`),
    );
    expect(r.status).toBe(0);
    await until("carol on the replica", 10_000, () =>
      search(replicaUri, mxDn, pw.mx, SUFFIX, "(mailLocalAddress=carol@example.org)", "uid").stdout.includes(
        "uid: carol",
      )
        ? true
        : undefined,
    );
    const ms = Date.now() - started;
    console.log(`syncrepl: new entry visible on the replica after ${ms} ms`);
    expect(ms).toBeLessThan(10_000);
  });

  it.runIf(asRoot)("root on the host manages the provider over ldapi:/// without a password", () => {
    expect(external("ldapwhoami", []).stdout.trim()).toBe(`dn:${LDAPI_ROOT_DN}`);
    const r = external("ldapsearch", ["-LLL", "-b", alice, "-s", "base", "userPassword"]);
    expect(r.stdout).toMatch(/^userPassword:: /m);
  });

  it("the replica refers writes to the provider", () => {
    const r = ldap(
      "ldapmodify",
      replicaUri,
      mxDn,
      pw.mx,
      [],
      `dn: ${bob}\nchangetype: modify\nreplace: cn\ncn: Robert\n`,
    );
    expect(r.status).toBe(10); // referral
    expect(`${r.stdout}${r.stderr}`).toContain(providerUri);
  });
});
