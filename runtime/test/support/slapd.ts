/**
 * A real OpenLDAP server (Debian's /usr/sbin/slapd) for tests: its own temp
 * dir, an mdb database, the schemas production uses (core, cosine,
 * inetorgperson, nis, misc + templates/ldap/mailinfra.schema), the same ACLs
 * in spirit (the service DN reads, users only bind), a free loopback port.
 *
 *   const ldap = await startSlapd({ accounts: TEST_ACCOUNTS });
 *   const dir = createDirectory(ldap.ldapConfig());
 *   ...
 *   afterAll(() => ldap.stop());
 *
 * Failover tests: `halt()` stops the process (port closed, data kept),
 * `resume()` starts it again on the same port; `freeze()` / `thaw()` send
 * SIGSTOP / SIGCONT (the kernel still accepts TCP, nothing answers: the
 * timeout path). `startSlapd({ replicaOf: provider })` starts a syncrepl
 * consumer of another instance, like ldap2 in production.
 *
 * TLS: `tls: true` adds an ldaps:// listener with a self-signed certificate.
 * `tls: { requireTls: true }` is production's setup: a test CA (openssl) signs
 * the server's certificate (`caFile` is the CA), StartTLS on the ldap:// port
 * and ldaps:// beside it, and `security simple_bind=64` so slapd refuses a
 * simple bind without TLS (confidentialityRequired). The helper's own admin
 * connections then use StartTLS, and a replica of such a server runs syncrepl
 * with `starttls=critical` against the same CA.
 *
 * Every process is ended by its PID; a watchdog stops slapd if the test
 * process dies before its afterAll.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { connect as netConnect } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Attribute, Change, Client } from "ldapts";
import { freePort } from "./process.js";
import { makeCertificate } from "./tls.js";

const SLAPD = "/usr/sbin/slapd";
const SCHEMA_DIR = "/etc/ldap/schema";
const MAILINFRA_SCHEMA = resolve(
  fileURLToPath(new URL(".", import.meta.url)),
  "../../../templates/ldap/mailinfra.schema",
);
const START_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 5_000;

export interface TestAccount {
  uid: string;
  /** Primary address (LDAP `mail`). */
  mail: string;
  /** Plain text; stored as {SSHA}. */
  password: string;
  /** `mailLocalAddress` values besides `mail` (aliases). */
  aliases?: string[];
  /** `mailRoutingAddress`: forward instead of store. */
  routingAddress?: string;
  mailHost?: string;
  quotaBytes?: number;
  /** `cn` (and `displayName`); defaults to the uid. */
  displayName?: string;
}

/** A small realistic set: plain, aliased (one in mixed case), forwarding, and one with a quota. */
export const TEST_ACCOUNTS: readonly TestAccount[] = [
  {
    uid: "alice",
    mail: "alice@example.org",
    password: "alice-secret-1",
    aliases: ["a.liddell@example.org", "postmaster@example.org"],
    mailHost: "store.example.org",
    quotaBytes: 10 * 1024 ** 2,
    displayName: "Alice Liddell",
  },
  {
    uid: "bob",
    mail: "bob@example.org",
    password: "bob-secret-2",
    aliases: ["robert@example.net", "Bob.Builder@Example.org"],
    mailHost: "store.example.org",
    displayName: "Bob Builder",
  },
  {
    uid: "carol",
    mail: "carol@example.org",
    password: "carol-secret-3",
    routingAddress: "carol@elsewhere.example",
    displayName: "Carol Forwarder",
  },
];

export interface StartSlapdOptions {
  /** Accounts created at start (ignored for a replica: it copies its provider). Defaults to TEST_ACCOUNTS. */
  accounts?: readonly TestAccount[];
  /** Defaults to dc=example,dc=org. */
  baseDn?: string;
  /** Start as a syncrepl consumer of this instance (same base DN, same service DN). */
  replicaOf?: Slapd;
  /**
   * true: also listen on ldaps:// with a fresh self-signed certificate for 127.0.0.1 (see `ldapsUri`, `caFile`).
   * An object: a certificate from a fresh test CA (`caFile`), ldaps:// too, and with
   * `requireTls` a simple bind without TLS is refused.
   */
  tls?: boolean | SlapdTlsOptions;
}

export interface SlapdTlsOptions {
  /** `security simple_bind=64`: simple binds only over TLS (slapd answers 13, confidentialityRequired). */
  requireTls?: boolean;
}

export interface Slapd {
  readonly uri: string;
  readonly host: string;
  readonly port: number;
  /** With `tls`: ldaps://127.0.0.1:port, and the PEM certificate to trust for it (the test CA for an object). */
  readonly ldapsUri: string | undefined;
  readonly caFile: string | undefined;
  /** Simple binds need TLS here (`tls.requireTls`). */
  readonly requireTls: boolean;
  readonly baseDn: string;
  /** The service's read-only DN, as in runtime.yaml `ldap.bindDn`. */
  readonly bindDn: string;
  readonly bindPassword: string;
  /** 0600 file holding bindPassword, as in runtime.yaml `ldap.bindPasswordFile`. */
  readonly bindPasswordFile: string;
  /** rootdn: writes, replication. */
  readonly adminDn: string;
  readonly adminPassword: string;
  readonly dir: string;
  /** PID of the running slapd, undefined while halted. */
  readonly pid: number | undefined;
  /** An object shaped like runtime.yaml's `ldap` section for this server (more servers: pass their URIs). */
  ldapConfig(overrides?: Partial<LdapConfigShape>): LdapConfigShape;
  accountDn(uid: string): string;
  addAccount(account: TestAccount): Promise<void>;
  setPassword(uid: string, password: string): Promise<void>;
  /** Replace the aliases (mailLocalAddress besides mail). */
  setAliases(uid: string, aliases: string[]): Promise<void>;
  deleteAccount(uid: string): Promise<void>;
  /** Connections slapd has accepted since it started (cn=Monitor), including the one asking. */
  totalConnections(): Promise<number>;
  /** Stop slapd (port closed), keep the data. */
  halt(): Promise<void>;
  /** Start slapd again on the same port with the same data. */
  resume(): Promise<void>;
  /** SIGSTOP: connections are accepted by the kernel but never answered. */
  freeze(): void;
  thaw(): void;
  /** For a replica: resolves once `dn` exists here (or rejects after timeoutMs). */
  waitForEntry(dn: string, timeoutMs?: number): Promise<void>;
  /** Stop slapd and remove its directory. Idempotent. */
  stop(): Promise<void>;
}

export interface LdapConfigShape {
  uris: string[];
  baseDn: string;
  bindDn: string;
  bindPasswordFile: string;
  timeoutMs: number;
  cacheTtlSeconds: number;
  quotaAttribute: string;
  caFile?: string;
  tls?: { ca?: string; startTls: boolean };
}

/** Runs openssl with these arguments; rejects with its stderr. */
function openssl(args: string[]): Promise<void> {
  return new Promise<void>((res, reject) => {
    const p = spawn("openssl", args, { stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    p.stderr?.on("data", (d: Buffer) => {
      err += d.toString();
    });
    p.once("error", reject);
    p.once("exit", (code) => (code === 0 ? res() : reject(new Error(`openssl ${args[0]} failed: ${err}`))));
  });
}

/**
 * A test CA (ca.pem) and a certificate it signs for 127.0.0.1 and localhost
 * (cert.pem, key.pem 0600), in `dir`. Made fresh per server: no CA is shared.
 */
export async function makeCaSignedCertificate(
  dir: string,
): Promise<{ caFile: string; certFile: string; keyFile: string }> {
  const f = (n: string) => join(dir, n);
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await openssl([
    ...["req", "-x509", ...ec, "-days", "2", "-subj", "/CN=mailinfra test LDAP CA"],
    ...["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
    ...["-keyout", f("ca.key"), "-out", f("ca.pem")],
  ]);
  await writeFile(
    f("ext.cnf"),
    "basicConstraints = critical, CA:FALSE\nextendedKeyUsage = serverAuth\nsubjectAltName = IP:127.0.0.1, DNS:localhost\n",
  );
  await openssl(["req", ...ec, "-subj", "/CN=127.0.0.1", "-keyout", f("key.pem"), "-out", f("req.csr")]);
  await openssl([
    ...["x509", "-req", "-days", "2", "-in", f("req.csr"), "-CA", f("ca.pem"), "-CAkey", f("ca.key")],
    ...["-CAcreateserial", "-extfile", f("ext.cnf"), "-out", f("cert.pem")],
  ]);
  await chmod(f("key.pem"), 0o600);
  await rm(f("ca.key"));
  return { caFile: f("ca.pem"), certFile: f("cert.pem"), keyFile: f("key.pem") };
}

/** RFC 2307 {SSHA}: base64(SHA1(password ‖ salt) ‖ salt), what slappasswd writes. */
export function sshaHash(password: string): string {
  const salt = randomBytes(8);
  const digest = createHash("sha1").update(password, "utf8").update(salt).digest();
  return `{SSHA}${Buffer.concat([digest, salt]).toString("base64")}`;
}

/**
 * slapd runs under a tiny sh watchdog that holds a pipe from us on fd 3: if
 * the test process dies without its afterAll (a killed worker), the pipe
 * closes and the watchdog stops slapd and removes its directory. The watchdog
 * prints slapd's PID first and exits with slapd.
 */
const WATCHDOG = [
  "exec 3<&0",
  '"$1" -d 0 -f "$2" -h "$3" </dev/null >/dev/null &',
  "p=$!",
  'echo "$p"',
  '( while read -r _ <&3; do :; done; : >"$4/.orphaned"; kill -TERM "$p" 2>/dev/null ) &',
  "w=$!",
  'wait "$p"',
  "code=$?",
  'kill "$w" 2>/dev/null',
  'if [ -e "$4/.orphaned" ]; then rm -rf "$4"; fi',
  'exit "$code"',
].join("\n");

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

function canConnect(host: string, port: number): Promise<boolean> {
  return new Promise((res) => {
    const socket = netConnect({ host, port });
    socket.once("connect", () => {
      socket.destroy();
      res(true);
    });
    socket.once("error", () => res(false));
  });
}

function dnValue(value: string): string {
  // RFC 4514 §2.4: escape the special characters of an attribute value.
  return value.replace(/([,+"\\<>;=])/g, "\\$1").replace(/^([ #])/, "\\$1");
}

function renderConfig(o: {
  dir: string;
  baseDn: string;
  adminDn: string;
  adminPassword: string;
  bindDn: string;
  provider?: { uri: string; adminDn: string; adminPassword: string; caFile: string | undefined };
  tls?: { certFile: string; keyFile: string; caFile?: string };
  requireTls?: boolean;
}): string {
  const schemas = ["core", "cosine", "inetorgperson", "nis", "misc"].map(
    (s) => `include ${SCHEMA_DIR}/${s}.schema`,
  );
  const syncrepl = o.provider
    ? [
        `syncrepl rid=001 provider=${o.provider.uri} type=refreshAndPersist retry="1 +"`,
        `  searchbase="${o.baseDn}" bindmethod=simple binddn="${o.provider.adminDn}"`,
        `  credentials="${o.provider.adminPassword}"`,
        ...(o.provider.caFile
          ? [`  starttls=critical tls_reqcert=demand tls_cacert=${o.provider.caFile}`]
          : []),
      ]
    : [];
  return [
    ...schemas,
    `include ${MAILINFRA_SCHEMA}`,
    ...(o.tls ? [`TLSCertificateFile ${o.tls.certFile}`, `TLSCertificateKeyFile ${o.tls.keyFile}`] : []),
    ...(o.tls?.caFile ? [`TLSCACertificateFile ${o.tls.caFile}`, "TLSVerifyClient never"] : []),
    // As in production: a simple bind needs a TLS layer (ssf ≥ 64).
    ...(o.requireTls ? ["security simple_bind=64"] : []),
    `pidfile ${o.dir}/slapd.pid`,
    `argsfile ${o.dir}/slapd.args`,
    "modulepath /usr/lib/ldap",
    "moduleload back_mdb",
    "moduleload syncprov",
    "moduleload back_monitor",
    "database mdb",
    "maxsize 67108864",
    `suffix "${o.baseDn}"`,
    `rootdn "${o.adminDn}"`,
    `rootpw ${sshaHash(o.adminPassword)}`,
    `directory ${o.dir}/db`,
    "index objectClass eq",
    "index uid,mail,mailLocalAddress eq",
    "index entryCSN,entryUUID eq",
    ...syncrepl,
    "overlay syncprov",
    // Production's ACLs in spirit: passwords only for binding, the service DN reads the rest.
    "access to attrs=userPassword",
    "  by self write",
    "  by anonymous auth",
    "  by * none",
    "access to *",
    `  by dn.exact="${o.bindDn}" read`,
    "  by self read",
    "  by * none",
    // cn=Monitor: connection counters for tests of connection reuse.
    "database monitor",
    "access to *",
    `  by dn.exact="${o.adminDn}" read`,
    "  by * none",
    "",
  ].join("\n");
}

export async function startSlapd(options: StartSlapdOptions = {}): Promise<Slapd> {
  const provider = options.replicaOf;
  const baseDn = provider?.baseDn ?? options.baseDn ?? "dc=example,dc=org";
  const dir = await mkdtemp(join(tmpdir(), "mailinfra-slapd-"));
  await mkdir(join(dir, "db"), { mode: 0o700 });
  const adminDn = `cn=admin,${baseDn}`;
  const adminPassword = provider?.adminPassword ?? randomBytes(12).toString("hex");
  const bindDn = `cn=mailinfra,ou=services,${baseDn}`;
  const bindPassword = provider?.bindPassword ?? randomBytes(12).toString("hex");
  const bindPasswordFile = join(dir, "bind-password");
  await writeFile(bindPasswordFile, `${bindPassword}\n`, { mode: 0o600 });
  const tlsOpts = typeof options.tls === "object" ? options.tls : undefined;
  const requireTls = tlsOpts?.requireTls === true;
  let tlsFiles: { certFile: string; keyFile: string; caFile?: string } | undefined;
  if (tlsOpts) tlsFiles = await makeCaSignedCertificate(dir);
  else if (options.tls) tlsFiles = await makeCertificate(dir, "127.0.0.1");
  const caFile: string | undefined = tlsFiles?.caFile ?? tlsFiles?.certFile;
  const confFile = join(dir, "slapd.conf");
  await writeFile(
    confFile,
    renderConfig({
      dir,
      baseDn,
      adminDn,
      adminPassword,
      bindDn,
      ...(provider
        ? {
            provider: {
              uri: provider.uri,
              adminDn,
              adminPassword,
              caFile: provider.requireTls ? provider.caFile : undefined,
            },
          }
        : {}),
      ...(tlsFiles ? { tls: tlsFiles } : {}),
      requireTls,
    }),
    { mode: 0o600 },
  );
  await chmod(confFile, 0o600);

  const host = "127.0.0.1";
  let port = 0;
  let tlsPort = 0;
  let child: { wrapper: ChildProcess; pid: number } | undefined;
  let stderr = "";
  let stopped = false;

  async function launch(onPort: number): Promise<void> {
    const urls = [`ldap://${host}:${onPort}/`, ...(tlsFiles ? [`ldaps://${host}:${tlsPort}/`] : [])].join(
      " ",
    );
    stderr = "";
    const wrapper = spawn("/bin/sh", ["-c", WATCHDOG, "slapd-watchdog", SLAPD, confFile, urls, dir], {
      stdio: ["pipe", "pipe", "pipe"],
    });
    wrapper.stderr?.setEncoding("utf8");
    wrapper.stderr?.on("data", (d: string) => {
      stderr = (stderr + d).slice(-4000);
    });
    let exited = false;
    wrapper.once("exit", () => {
      exited = true;
    });
    const pid = await new Promise<number>((resolve, reject) => {
      let out = "";
      wrapper.stdout?.setEncoding("utf8");
      wrapper.stdout?.on("data", (d: string) => {
        out += d;
        const line = out.split("\n")[0];
        if (out.includes("\n") && line) resolve(Number(line));
      });
      wrapper.once("exit", () => reject(new Error(`slapd watchdog exited: ${stderr.trim()}`)));
      wrapper.once("error", reject);
    });
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (exited) throw new Error(`slapd exited at start: ${stderr.trim()}`);
      if (await canConnect(host, onPort)) {
        child = { wrapper, pid };
        return;
      }
      await new Promise((r) => setTimeout(r, 30));
    }
    signal(pid, "SIGKILL");
    throw new Error(`slapd did not listen on ${host}:${onPort} within ${START_TIMEOUT_MS} ms: ${stderr}`);
  }

  async function halt(): Promise<void> {
    const running = child;
    child = undefined;
    const { wrapper, pid } = running ?? {};
    if (!wrapper || pid === undefined || wrapper.exitCode !== null || wrapper.signalCode !== null) return;
    // The watchdog exits once slapd has.
    const exited = once(wrapper, "exit");
    signal(pid, "SIGCONT"); // in case it was frozen
    signal(pid, "SIGTERM");
    const timer = setTimeout(() => signal(pid, "SIGKILL"), STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
  }

  // A port can be taken between freePort() and slapd's bind: retry a few times.
  for (let attempt = 1; ; attempt++) {
    port = await freePort();
    if (tlsFiles) tlsPort = await freePort();
    try {
      await launch(port);
      break;
    } catch (err) {
      if (attempt >= 5) {
        await rm(dir, { recursive: true, force: true });
        throw err;
      }
    }
  }
  const uri = `ldap://${host}:${port}`;

  async function admin<T>(fn: (c: Client) => Promise<T>): Promise<T> {
    const client = new Client({ url: uri, timeout: 5000, connectTimeout: 5000 });
    try {
      if (requireTls) await client.startTLS({ ca: await readFile(caFile!), host });
      await client.bind(adminDn, adminPassword);
      return await fn(client);
    } finally {
      await client.unbind().catch(() => {});
    }
  }
  const accountDn = (uid: string) => `uid=${dnValue(uid)},ou=people,${baseDn}`;

  async function addAccount(a: TestAccount): Promise<void> {
    const attributes: Record<string, string | string[]> = {
      objectClass: ["inetOrgPerson", "inetLocalMailRecipient", "mailinfraAccount"],
      uid: a.uid,
      cn: a.displayName ?? a.uid,
      sn: a.displayName?.split(" ").pop() ?? a.uid,
      displayName: a.displayName ?? a.uid,
      mail: a.mail,
      mailLocalAddress: [a.mail, ...(a.aliases ?? [])],
      userPassword: sshaHash(a.password),
    };
    if (a.routingAddress !== undefined) attributes.mailRoutingAddress = a.routingAddress;
    if (a.mailHost !== undefined) attributes.mailHost = a.mailHost;
    if (a.quotaBytes !== undefined) attributes.mailQuotaBytes = String(a.quotaBytes);
    await admin((c) => c.add(accountDn(a.uid), attributes));
  }

  async function replace(uid: string, type: string, values: string[]): Promise<void> {
    await admin((c) =>
      c.modify(
        accountDn(uid),
        new Change({ operation: "replace", modification: new Attribute({ type, values }) }),
      ),
    );
  }

  if (!provider) {
    try {
      await seed();
    } catch (err) {
      await halt();
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
  }

  async function seed(): Promise<void> {
    const dc = baseDn.split(",")[0]?.split("=")[1] ?? "example";
    await admin(async (c) => {
      await c.add(baseDn, { objectClass: ["dcObject", "organization"], dc, o: dc });
      await c.add(`ou=people,${baseDn}`, { objectClass: "organizationalUnit", ou: "people" });
      await c.add(`ou=services,${baseDn}`, { objectClass: "organizationalUnit", ou: "services" });
      await c.add(bindDn, {
        objectClass: ["organizationalRole", "simpleSecurityObject"],
        cn: "mailinfra",
        userPassword: sshaHash(bindPassword),
      });
    });
    for (const a of options.accounts ?? TEST_ACCOUNTS) await addAccount(a);
  }

  const slapd: Slapd = {
    uri,
    host,
    port,
    ldapsUri: tlsFiles ? `ldaps://${host}:${tlsPort}` : undefined,
    caFile,
    requireTls,
    baseDn,
    bindDn,
    bindPassword,
    bindPasswordFile,
    adminDn,
    adminPassword,
    dir,
    get pid() {
      return child?.pid;
    },
    ldapConfig(overrides = {}) {
      return {
        uris: [uri],
        baseDn,
        bindDn,
        bindPasswordFile,
        timeoutMs: 2000,
        cacheTtlSeconds: 0,
        quotaAttribute: "mailQuotaBytes",
        // A server that refuses binds in clear gets StartTLS against its CA by default.
        ...(requireTls ? { tls: { ca: caFile!, startTls: true } } : {}),
        ...overrides,
      };
    },
    accountDn,
    addAccount,
    setPassword: (uid, password) => replace(uid, "userPassword", [sshaHash(password)]),
    async setAliases(uid, aliases) {
      const mail = await admin(async (c) => {
        const { searchEntries } = await c.search(accountDn(uid), { scope: "base", attributes: ["mail"] });
        return String(searchEntries[0]?.mail ?? "");
      });
      await replace(uid, "mailLocalAddress", [mail, ...aliases]);
    },
    deleteAccount: (uid) => admin((c) => c.del(accountDn(uid))),
    totalConnections: () =>
      admin(async (c) => {
        const { searchEntries } = await c.search("cn=Total,cn=Connections,cn=Monitor", {
          scope: "base",
          attributes: ["monitorCounter"],
        });
        return Number(searchEntries[0]?.monitorCounter);
      }),
    halt,
    async resume() {
      if (child) return;
      await launch(port);
    },
    freeze() {
      if (child) signal(child.pid, "SIGSTOP");
    },
    thaw() {
      if (child) signal(child.pid, "SIGCONT");
    },
    async waitForEntry(dn, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = await admin(async (c) => {
          try {
            const { searchEntries } = await c.search(dn, { scope: "base", attributes: ["1.1"] });
            return searchEntries.length > 0;
          } catch {
            return false;
          }
        });
        if (found) return;
        if (Date.now() > deadline) throw new Error(`${dn} did not reach ${uri} within ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await halt();
      await rm(dir, { recursive: true, force: true });
    },
  };
  return slapd;
}
