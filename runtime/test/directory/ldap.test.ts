// LdapDirectory against real slapd instances (test/support/slapd.ts).
import { spawn } from "node:child_process";
import { once } from "node:events";
import { writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDirectory, type Directory, DirectoryUnavailableError } from "../../src/directory/index.js";
import { MAX_ADDRESS_LENGTH, MAX_LOGIN_LENGTH, MAX_PASSWORD_LENGTH } from "../../src/directory/ldap.js";
import { type Slapd, startSlapd, TEST_ACCOUNTS } from "../support/slapd.js";

async function closedPortUri(): Promise<string> {
  const server = createServer().listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  await new Promise<void>((r) => server.close(() => r()));
  return `ldap://127.0.0.1:${port}`;
}

/** A client nobody here wrote (ldap-utils), its exit code and output. */
function run(
  cmd: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; out: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    p.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    p.stderr.on("data", (d: Buffer) => {
      out += d.toString();
    });
    p.once("error", reject);
    p.once("exit", (code) => resolve({ code: code ?? -1, out }));
  });
}

const started: Slapd[] = [];
const directories: Directory[] = [];
async function slapd(...args: Parameters<typeof startSlapd>): Promise<Slapd> {
  const s = await startSlapd(...args);
  started.push(s);
  return s;
}
function directory(...args: Parameters<typeof createDirectory>): Directory {
  const d = createDirectory(...args);
  directories.push(d);
  return d;
}

afterAll(async () => {
  for (const d of directories) await d.close();
  for (const s of started) await s.stop();
});

describe("lookups and authentication", () => {
  let ldap: Slapd;
  let dir: Directory;
  beforeAll(async () => {
    ldap = await slapd({ accounts: TEST_ACCOUNTS });
    dir = directory(ldap.ldapConfig());
  });

  it("finds an account by its primary address, with every field mapped", async () => {
    const alice = await dir.findByAddress("alice@example.org");
    expect(alice).toEqual({
      uid: "alice",
      dn: ldap.accountDn("alice"),
      mail: "alice@example.org",
      addresses: ["alice@example.org", "a.liddell@example.org", "postmaster@example.org"],
      mailHost: "store.example.org",
      quotaBytes: 10 * 1024 ** 2,
      displayName: "Alice Liddell",
    });
  });

  it("finds by alias (mailLocalAddress), case-insensitively, addresses lower-cased", async () => {
    const bob = await dir.findByAddress("BOB.builder@example.ORG");
    expect(bob?.uid).toBe("bob");
    expect(bob?.addresses).toEqual(["bob@example.org", "robert@example.net", "bob.builder@example.org"]);
    expect(bob?.quotaBytes).toBeUndefined();
    expect((await dir.findByAddress("robert@example.net"))?.uid).toBe("bob");
  });

  it("returns the routing address of a forwarding account", async () => {
    const carol = await dir.findByAddress("carol@example.org");
    expect(carol?.routingAddress).toBe("carol@elsewhere.example");
    expect(carol?.mailHost).toBeUndefined();
  });

  it("finds by uid, and by address when the login has an @", async () => {
    expect((await dir.findByLogin("alice"))?.mail).toBe("alice@example.org");
    expect((await dir.findByLogin("Alice"))?.uid).toBe("alice");
    expect((await dir.findByLogin("postmaster@example.org"))?.uid).toBe("alice");
  });

  it("answers null for unknown addresses and logins", async () => {
    expect(await dir.findByAddress("nobody@example.org")).toBeNull();
    expect(await dir.findByLogin("nobody")).toBeNull();
    expect(await dir.findByAddress("")).toBeNull();
    expect(await dir.findByAddress(`${"x".repeat(MAX_ADDRESS_LENGTH)}@example.org`)).toBeNull();
  });

  it("never sends logins over MAX_LOGIN_LENGTH, addresses over MAX_ADDRESS_LENGTH or passwords over MAX_PASSWORD_LENGTH", async () => {
    // Against a server that cannot answer: what is sent fails as unavailable, what is refused first is null.
    const down = directory(ldap.ldapConfig({ uris: [await closedPortUri()] }));
    await expect(down.findByLogin("a".repeat(MAX_LOGIN_LENGTH))).rejects.toBeInstanceOf(
      DirectoryUnavailableError,
    );
    expect(await down.findByLogin("a".repeat(MAX_LOGIN_LENGTH + 1))).toBeNull();
    const address = (n: number) => `${"a".repeat(n - "@example.org".length)}@example.org`;
    await expect(down.findByAddress(address(MAX_ADDRESS_LENGTH))).rejects.toBeInstanceOf(
      DirectoryUnavailableError,
    );
    expect(await down.findByAddress(address(MAX_ADDRESS_LENGTH + 1))).toBeNull();
    await expect(down.authenticate("alice", "p".repeat(MAX_PASSWORD_LENGTH))).rejects.toBeInstanceOf(
      DirectoryUnavailableError,
    );
    expect(await down.authenticate("alice", "p".repeat(MAX_PASSWORD_LENGTH + 1))).toBeNull();
  });

  it("authenticates with the right password, by uid or by address", async () => {
    expect((await dir.authenticate("alice", "alice-secret-1"))?.uid).toBe("alice");
    expect((await dir.authenticate("robert@example.net", "bob-secret-2"))?.uid).toBe("bob");
  });

  it("refuses a wrong password, another user's password, an unknown user and an empty password", async () => {
    expect(await dir.authenticate("alice", "alice-secret-2")).toBeNull();
    expect(await dir.authenticate("alice", "bob-secret-2")).toBeNull();
    expect(await dir.authenticate("nobody", "alice-secret-1")).toBeNull();
    // RFC 4513 §5.1.2: DN + empty password would be an unauthenticated bind.
    expect(await dir.authenticate("alice", "")).toBeNull();
  });

  it("treats LDAP filter syntax in addresses and logins as literal text", async () => {
    const attempts = [
      "*",
      "*)(uid=*",
      "*)(uid=*))(|(uid=*",
      "alice@example.org)(mail=*",
      "*@example.org",
      "al*",
      "alice\\2a",
      "alice\0",
      "(|(uid=*))",
    ];
    for (const input of attempts) {
      expect(await dir.findByAddress(input), input).toBeNull();
      expect(await dir.findByLogin(input), input).toBeNull();
      expect(await dir.authenticate(input, "alice-secret-1"), input).toBeNull();
    }
  });

  it("answers null (not an error) for an address outside the attribute's IA5 syntax", async () => {
    expect(await dir.findByAddress("jörg@example.org")).toBeNull();
    expect(await dir.findByLogin("jörg")).toBeNull();
  });

  it("reports two accounts claiming one address as unavailable (mail waits), not as a match", async () => {
    await ldap.addAccount({
      uid: "dup",
      mail: "dup@example.org",
      password: "dup-secret",
      aliases: ["shared@example.org"],
    });
    await ldap.addAccount({
      uid: "dup2",
      mail: "dup2@example.org",
      password: "dup-secret",
      aliases: ["shared@example.org"],
    });
    await expect(dir.findByAddress("shared@example.org")).rejects.toBeInstanceOf(DirectoryUnavailableError);
  });

  it("reuses one service connection for lookups", async () => {
    const reuse = directory(ldap.ldapConfig({ cacheTtlSeconds: 0 }));
    await reuse.findByAddress("alice@example.org"); // opens the service connection
    const before = await ldap.totalConnections();
    for (let i = 0; i < 20; i++) {
      await reuse.findByAddress(i % 2 ? "alice@example.org" : "bob@example.org");
    }
    await Promise.all(Array.from({ length: 20 }, () => reuse.findByLogin("carol")));
    const after = await ldap.totalConnections();
    // The only new connection is the monitor query itself.
    expect(after - before).toBe(1);
  });

  it("counts lookups in the metrics registry", async () => {
    const registry = new Registry();
    const counted = directory(ldap.ldapConfig({ cacheTtlSeconds: 60 }), { metrics: registry });
    await counted.findByAddress("alice@example.org");
    await counted.findByAddress("alice@example.org");
    await counted.findByAddress("nobody@example.org");
    const text = await registry.metrics();
    expect(text).toContain('mailinfra_directory_requests_total{op="address",result="found"} 1');
    expect(text).toContain('mailinfra_directory_requests_total{op="address",result="cache"} 1');
    expect(text).toContain('mailinfra_directory_requests_total{op="address",result="none"} 1');
  });
});

describe("failover", () => {
  let good: Slapd;
  beforeAll(async () => {
    good = await slapd();
  });

  it("uses the second server when the first refuses connections", async () => {
    const dir = directory(good.ldapConfig({ uris: [await closedPortUri(), good.uri] }));
    expect((await dir.findByAddress("alice@example.org"))?.uid).toBe("alice");
    expect((await dir.authenticate("alice", "alice-secret-1"))?.uid).toBe("alice");
    expect(await dir.authenticate("alice", "wrong")).toBeNull();
  });

  it("uses the second server when the first slapd has been stopped", async () => {
    const first = await slapd();
    const dir = directory(good.ldapConfig({ uris: [first.uri, good.uri] }));
    expect((await dir.findByLogin("bob"))?.mail).toBe("bob@example.org");
    await first.halt();
    expect((await dir.findByLogin("carol"))?.mail).toBe("carol@example.org");
    expect((await dir.authenticate("carol", "carol-secret-3"))?.uid).toBe("carol");
  });

  it("times out on a server that accepts but never answers, then holds it down", async () => {
    const frozen = await slapd();
    frozen.freeze();
    try {
      const dir = directory(good.ldapConfig({ uris: [frozen.uri, good.uri], timeoutMs: 1000 }));
      let t0 = Date.now();
      expect((await dir.findByLogin("alice"))?.uid).toBe("alice");
      const firstMs = Date.now() - t0;
      expect(firstMs).toBeGreaterThanOrEqual(950);
      expect(firstMs).toBeLessThan(4000);
      // Held down: the next lookup goes straight to the good server, without waiting a timeout.
      t0 = Date.now();
      expect((await dir.findByLogin("bob"))?.uid).toBe("bob");
      expect(Date.now() - t0).toBeLessThan(900);
    } finally {
      frozen.thaw();
    }
  });

  it("re-establishes the service connection after its server restarts", async () => {
    const restarting = await slapd();
    const dir = directory(restarting.ldapConfig({ cacheTtlSeconds: 0 }), { holdDownMs: 0 });
    expect((await dir.findByLogin("alice"))?.uid).toBe("alice");
    await restarting.halt();
    await expect(dir.findByLogin("alice")).rejects.toBeInstanceOf(DirectoryUnavailableError);
    await restarting.resume();
    expect((await dir.findByLogin("alice"))?.uid).toBe("alice");
    // Restarted again with no lookup while down: many lookups at once find the dead connection.
    await restarting.halt();
    await restarting.resume();
    const before = await restarting.totalConnections();
    // Many lookups at once on the dead connection: one new service connection, no spurious failures.
    const uids = await Promise.all(
      Array.from({ length: 30 }, (_, i) => dir.findByLogin(["alice", "bob", "carol"][i % 3]!)),
    );
    expect(uids.map((a) => a?.uid)).toEqual(
      Array.from({ length: 30 }, (_, i) => ["alice", "bob", "carol"][i % 3]),
    );
    // The lookups' one new connection, and the monitor query itself.
    expect(await restarting.totalConnections()).toBe(before + 2);
  });

  it("throws DirectoryUnavailableError (never 'unknown user') when every server is down", async () => {
    const down = await slapd();
    await down.halt();
    const dir = directory(down.ldapConfig({ uris: [await closedPortUri(), down.uri], timeoutMs: 500 }));
    await expect(dir.findByAddress("alice@example.org")).rejects.toBeInstanceOf(DirectoryUnavailableError);
    await expect(dir.findByLogin("alice")).rejects.toBeInstanceOf(DirectoryUnavailableError);
    await expect(dir.authenticate("alice", "alice-secret-1")).rejects.toThrow(/no LDAP server answered/);
  });

  it("reads a syncrepl replica first and falls back to the provider", async () => {
    const provider = await slapd();
    const replica = await slapd({ replicaOf: provider });
    await replica.waitForEntry(provider.accountDn("carol"));
    const dir = directory(provider.ldapConfig({ uris: [replica.uri, provider.uri] }));
    await provider.addAccount({ uid: "dave", mail: "dave@example.org", password: "dave-secret-4" });
    await replica.waitForEntry(provider.accountDn("dave"));
    expect((await dir.findByAddress("dave@example.org"))?.uid).toBe("dave");
    const before = await provider.totalConnections();
    expect((await dir.findByLogin("alice"))?.uid).toBe("alice");
    expect(await provider.totalConnections()).toBe(before + 1); // only the monitor query: replica served it
    await replica.halt();
    expect((await dir.authenticate("dave", "dave-secret-4"))?.uid).toBe("dave");
    expect((await dir.findByLogin("bob"))?.uid).toBe("bob");
  });
});

describe("ldaps://", () => {
  it("looks up and authenticates over TLS when the certificate is trusted (ldap.caFile)", async () => {
    const tls = await slapd({ tls: true });
    const dir = directory(tls.ldapConfig({ uris: [tls.ldapsUri!], caFile: tls.caFile! }));
    expect((await dir.findByAddress("alice@example.org"))?.uid).toBe("alice");
    expect((await dir.authenticate("alice", "alice-secret-1"))?.uid).toBe("alice");
    expect(await dir.authenticate("alice", "nope")).toBeNull();
  });

  it("refuses a server whose certificate is not trusted, and fails over to the next", async () => {
    const tls = await slapd({ tls: true });
    const untrusted = directory(tls.ldapConfig({ uris: [tls.ldapsUri!] }));
    await expect(untrusted.findByLogin("alice")).rejects.toThrow(/self[- ]signed certificate/);
    const fallback = directory(tls.ldapConfig({ uris: [tls.ldapsUri!, tls.uri] }));
    expect((await fallback.findByLogin("alice"))?.uid).toBe("alice");
  });
});

describe("TLS required (ldap.tls: StartTLS on ldap://, ldaps://, checked against the CA)", () => {
  let ldap: Slapd;
  let other: Slapd;
  beforeAll(async () => {
    [ldap, other] = await Promise.all([
      slapd({ tls: { requireTls: true } }),
      slapd({ tls: { requireTls: true }, accounts: [] }),
    ]);
  });

  it("looks up and authenticates over StartTLS on ldap:// and over ldaps://", async () => {
    const startTls = directory(ldap.ldapConfig({ tls: { ca: ldap.caFile!, startTls: true } }));
    expect((await startTls.findByAddress("alice@example.org"))?.uid).toBe("alice");
    expect((await startTls.authenticate("alice", "alice-secret-1"))?.uid).toBe("alice");
    expect(await startTls.authenticate("alice", "wrong")).toBeNull();
    const ldaps = directory(
      ldap.ldapConfig({ uris: [ldap.ldapsUri!], tls: { ca: ldap.caFile!, startTls: true } }),
    );
    expect((await ldaps.authenticate("bob", "bob-secret-2"))?.uid).toBe("bob");
  });

  it("a CA that did not sign the server's certificate: a clear error naming the server, no plaintext retry", async () => {
    const before = await ldap.totalConnections();
    const wrong = directory(
      ldap.ldapConfig({ tls: { ca: other.caFile!, startTls: true }, cacheTtlSeconds: 0 }),
    );
    const err = await wrong.findByLogin("alice").then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(DirectoryUnavailableError);
    const message = (err as Error).message;
    expect(message).toContain(`LDAP server ${ldap.uri}: certificate not verified against ${other.caFile}`);
    // slapd sends its CA with its certificate: a chain ending in a CA nobody trusts here.
    expect(message).toMatch(/SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY/);
    // One connection (the refused StartTLS) and the monitor query: nothing went again in clear.
    expect(await ldap.totalConnections()).toBe(before + 2);
    const ldaps = directory(
      ldap.ldapConfig({ uris: [ldap.ldapsUri!], tls: { ca: other.caFile!, startTls: true } }),
    );
    await expect(ldaps.authenticate("alice", "alice-secret-1")).rejects.toThrow(
      `LDAP server ${ldap.ldapsUri}: certificate not verified against ${other.caFile}`,
    );
  });

  it("slapd refuses a simple bind without TLS (confidentialityRequired), for ldapwhoami and for the runtime", async () => {
    // ldapwhoami -y sends the file's bytes as they are: the right password, without a newline.
    const pwFile = join(ldap.dir, "whoami.pw");
    await writeFile(pwFile, ldap.bindPassword, { mode: 0o600 });
    const whoami = (...flags: string[]) =>
      run("ldapwhoami", [...flags, "-x", "-H", ldap.uri, "-D", ldap.bindDn, "-y", pwFile], {
        LDAPTLS_CACERT: ldap.caFile!,
      });
    const plain = await whoami();
    expect(plain.out).toMatch(/Confidentiality required \(13\)/i);
    expect(plain.code).toBe(13);
    const tls = await whoami("-ZZ");
    expect(tls.out.trim()).toBe(`dn:${ldap.bindDn}`);
    expect(tls.code).toBe(0);
    const { tls: _, ...noTlsConfig } = ldap.ldapConfig();
    const noTls = directory(noTlsConfig);
    await expect(noTls.findByLogin("alice")).rejects.toThrow(/[Cc]onfidentiality/);
  });

  it("after the server restarts, the new connection does StartTLS again (lookups still see the entries)", async () => {
    const dir = directory(ldap.ldapConfig({ tls: { ca: ldap.caFile!, startTls: true } }), { holdDownMs: 0 });
    expect((await dir.findByLogin("carol"))?.uid).toBe("carol");
    await ldap.halt();
    await ldap.resume();
    expect((await dir.findByLogin("carol"))?.uid).toBe("carol");
    expect((await dir.authenticate("carol", "carol-secret-3"))?.uid).toBe("carol");
  });

  it("a replica pulls from the provider with syncrepl over StartTLS (starttls=critical, the CA checked)", async () => {
    const replica = await slapd({ replicaOf: ldap, tls: { requireTls: true } });
    await replica.waitForEntry(ldap.accountDn("alice"));
    await ldap.addAccount({ uid: "erin", mail: "erin@example.org", password: "erin-secret-5" });
    await replica.waitForEntry(ldap.accountDn("erin"));
    const dir = directory(replica.ldapConfig());
    expect((await dir.authenticate("erin", "erin-secret-5"))?.uid).toBe("erin");
  });
});

describe("cache", () => {
  let ldap: Slapd;
  let now: number;
  const clock = () => now;
  beforeAll(async () => {
    ldap = await slapd();
  });

  it("serves lookups from the cache for the TTL, then asks again", async () => {
    now = 1_000_000;
    const dir = directory(ldap.ldapConfig({ cacheTtlSeconds: 60 }), { now: clock });
    expect((await dir.findByLogin("bob"))?.addresses).not.toContain("bobby@example.org");
    await ldap.setAliases("bob", ["bobby@example.org"]);
    now += 59_000;
    expect((await dir.findByLogin("bob"))?.addresses).not.toContain("bobby@example.org");
    now += 2_000;
    expect((await dir.findByLogin("bob"))?.addresses).toContain("bobby@example.org");
  });

  it("keeps a negative answer only a few seconds, whatever the TTL", async () => {
    now = 2_000_000;
    const dir = directory(ldap.ldapConfig({ cacheTtlSeconds: 3600 }), { now: clock });
    expect(await dir.findByAddress("erin@example.org")).toBeNull();
    await ldap.addAccount({ uid: "erin", mail: "erin@example.org", password: "erin-secret-5" });
    now += 1_000;
    expect(await dir.findByAddress("erin@example.org")).toBeNull();
    now += 4_500;
    expect((await dir.findByAddress("erin@example.org"))?.uid).toBe("erin");
  });

  it("never caches passwords: a changed password takes effect at once", async () => {
    now = 3_000_000;
    const dir = directory(ldap.ldapConfig({ cacheTtlSeconds: 3600 }), { now: clock });
    expect((await dir.authenticate("carol", "carol-secret-3"))?.uid).toBe("carol");
    await ldap.setPassword("carol", "carol-new-secret");
    expect(await dir.authenticate("carol", "carol-secret-3")).toBeNull();
    expect((await dir.authenticate("carol", "carol-new-secret"))?.uid).toBe("carol");
  });

  it("answers cached lookups while the directory is down; uncached ones are unavailable", async () => {
    now = 4_000_000;
    const own = await slapd();
    const dir = directory(own.ldapConfig({ cacheTtlSeconds: 60 }), { now: clock });
    expect((await dir.findByAddress("alice@example.org"))?.uid).toBe("alice");
    await own.halt();
    expect((await dir.findByAddress("alice@example.org"))?.uid).toBe("alice");
    await expect(dir.findByAddress("bob@example.org")).rejects.toBeInstanceOf(DirectoryUnavailableError);
    await expect(dir.authenticate("alice", "alice-secret-1")).rejects.toBeInstanceOf(
      DirectoryUnavailableError,
    );
  });

  it("with TTL 0 asks the server every time", async () => {
    const dir = directory(ldap.ldapConfig({ cacheTtlSeconds: 0 }));
    expect(await dir.findByAddress("frank@example.org")).toBeNull();
    await ldap.addAccount({ uid: "frank", mail: "frank@example.org", password: "frank-secret-6" });
    expect((await dir.findByAddress("frank@example.org"))?.uid).toBe("frank");
  });
});
