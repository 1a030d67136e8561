/**
 * `mailinfra serve imap` from the real bundle, as the hosts run it: a
 * runtime.yaml with ldap (a real slapd), store, tls and imap sections;
 * python3's imaplib logs in over implicit TLS and STARTTLS (LOGINDISABLED
 * before TLS), and the password never shows up in the logs.
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Bundle, buildBundle, type ServeProcess, spawnServe } from "../cli/bundle.js";
import { freePort } from "../support/process.js";
import { type Slapd, startSlapd, TEST_ACCOUNTS } from "../support/slapd.js";
import { selfSigned } from "./support.js";

const run = promisify(execFile);
const alice = TEST_ACCOUNTS.find((a) => a.uid === "alice")!;

let ldap: Slapd;
let bundle: Bundle;
let serve: ServeProcess;
let dir: string;
let port: number;
let tlsPort: number;
let certFile: string;

beforeAll(async () => {
  [ldap, bundle] = await Promise.all([startSlapd(), buildBundle()]);
  dir = await mkdtemp(join(tmpdir(), "imap-bundle-"));
  const cert = await selfSigned();
  certFile = join(dir, "cert.pem");
  await writeFile(certFile, cert.cert);
  await writeFile(join(dir, "key.pem"), cert.key, { mode: 0o600 });
  [port, tlsPort] = await Promise.all([freePort(), freePort()]);
  const c = ldap.ldapConfig();
  await writeFile(
    join(dir, "runtime.yaml"),
    `host: { name: store1, roles: [store] }
tls: { certFile: ${certFile}, keyFile: ${join(dir, "key.pem")} }
ldap:
  uris: [${c.uris[0]}]
  baseDn: "${c.baseDn}"
  bindDn: "${c.bindDn}"
  bindPasswordFile: ${c.bindPasswordFile}
store: { root: ${join(dir, "mail")}, fsync: true }
imap:
  listen: ["127.0.0.1:${port}"]
  tlsListen: ["127.0.0.1:${tlsPort}"]
  loginDisabledWithoutTls: true
`,
  );
  serve = spawnServe(bundle, ["serve", "imap", "--config", join(dir, "runtime.yaml")]);
  await serve.waitFor((l) => l.msg === "IMAP listening");
});

afterAll(async () => {
  if (serve && serve.child.exitCode === null) {
    serve.child.kill("SIGTERM");
    await serve.exited;
  }
  await bundle?.remove();
  await ldap?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const SCRIPT = `
import imaplib, os, ssl, sys
ctx = ssl.create_default_context(cafile=os.environ["CAFILE"]); ctx.check_hostname = False
plain = imaplib.IMAP4("127.0.0.1", int(os.environ["PORT"]))
caps = " ".join(plain.capabilities)
plain.starttls(ssl_context=ctx)
plain.login(os.environ["USER_NAME"], os.environ["PASSWORD"])
plain.logout()
s = imaplib.IMAP4_SSL("127.0.0.1", int(os.environ["TLS_PORT"]), ssl_context=ctx)
s.login(os.environ["USER_NAME"], os.environ["PASSWORD"])
s.append("INBOX", None, None, b"Subject: via the bundle\\r\\n\\r\\nhello\\r\\n")
s.select("INBOX")
typ, data = s.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
print(caps + "|" + data[0][1].decode().strip())
s.logout()
`;

describe("mailinfra serve imap (bundle)", () => {
  it("serves imaplib over STARTTLS and implicit TLS with LDAP accounts; no password in the logs", async () => {
    const { stdout } = await run("python3", ["-c", SCRIPT], {
      env: {
        ...process.env,
        CAFILE: certFile,
        PORT: String(port),
        TLS_PORT: String(tlsPort),
        USER_NAME: alice.uid,
        PASSWORD: alice.password,
      },
      timeout: 30_000,
    });
    const [caps, subject] = stdout.trim().split("|");
    expect(caps).toMatch(/LOGINDISABLED/);
    expect(caps).toMatch(/STARTTLS/);
    expect(subject).toBe("Subject: via the bundle");
    await serve.waitFor((l) => l.msg === "logged in" && l.user === "alice");
    expect(JSON.stringify(serve.lines)).not.toContain(alice.password);
    expect(serve.stderr()).not.toContain(alice.password);
  });
});
