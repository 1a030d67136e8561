/**
 * Every named limit of the IMAP server (runtime/src/imap/limits.ts), each
 * against a server configured with a small value.
 */
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Directory } from "../../src/directory/types.js";
import { memoryDirectory, startServer, type TestServer, Transcript } from "./support.js";

let srv: TestServer;
beforeAll(async () => {
  srv = await startServer({
    limits: {
      maxLineBytes: 1000,
      maxLiteralBytes: 4096,
      maxBadCommands: 4,
      idleTimeoutMs: 400,
      maxConnectionsPerIp: 40,
      maxConnectionsPerUser: 2,
      authFailuresBeforeDelay: 2,
      authFailureDelayMs: 500,
    },
  });
});
afterAll(async () => {
  await srv?.stop();
});

describe("MAX_LINE_BYTES", () => {
  it("closes with BYE when a line is longer than the limit", async () => {
    const t = await Transcript.connect(srv.port);
    t.send(`a LOGIN ${"x".repeat(1200)}\r\n`);
    expect(await t.until(/\* BYE[^\r]*\r\n/)).toMatch(/Line too long/);
    await t.waitClosed();
  });

  it("accepts a line just under the limit", async () => {
    const t = await Transcript.connect(srv.port);
    expect(await t.cmd("a", `LOGIN ${"x".repeat(900)} y`)).toMatch(/a NO \[AUTHENTICATIONFAILED\]/);
    t.close();
  });
});

describe("MAX_LITERAL_BYTES (and APPENDLIMIT, RFC 7889)", () => {
  it("refuses a synchronizing literal over the limit without asking for it, and carries on", async () => {
    const t = await Transcript.connect(srv.port);
    await t.cmd("l", "LOGIN alice alice-secret-1");
    expect(await t.cmd("c", "CAPABILITY")).toMatch(/APPENDLIMIT=4096/);
    t.send("a APPEND INBOX {5000}\r\n");
    const out = await t.until(/a (NO|OK|BAD)[^\r]*\r\n/);
    expect(out).not.toMatch(/^\+/m);
    expect(out).toMatch(/a NO \[TOOBIG\]/);
    expect(await t.cmd("n", "NOOP")).toMatch(/n OK/);
    const msg = "Subject: ok\r\n\r\nfine\r\n";
    t.send(`b APPEND INBOX {${msg.length}}\r\n`);
    await t.until(/\+ [^\r]*\r\n/);
    t.send(`${msg}\r\n`);
    expect(await t.until(/b OK[^\r]*\r\n/)).toMatch(/APPENDUID/);
    t.close();
  });

  it("closes the connection for a non-synchronizing literal over the limit (RFC 7888 §4)", async () => {
    const t = await Transcript.connect(srv.port);
    await t.cmd("l", "LOGIN alice alice-secret-1");
    t.send(`a APPEND INBOX {5000+}\r\n${"y".repeat(5000)}\r\n`);
    expect(await t.until(/\* BYE[^\r]*\r\n/)).toMatch(/TOOBIG/);
    await t.waitClosed();
  });
});

describe("MAX_PREAUTH_LITERAL_BYTES", () => {
  it("accepts only small literals before login, the configured size after", async () => {
    const t = await Transcript.connect(srv.port);
    t.send("a LOGIN {9000}\r\n");
    expect(await t.until(/a (NO|OK|BAD)[^\r]*\r\n/)).toMatch(
      /a NO \[TOOBIG\] Literal too large \(limit 4096 octets\)/,
    );
    t.close();
    const own = await startServer({ limits: { maxLiteralBytes: 100_000 } });
    try {
      const u = await Transcript.connect(own.port);
      u.send("a LOGIN {9000}\r\n");
      expect(await u.until(/a (NO|OK|BAD)[^\r]*\r\n/)).toMatch(
        /a NO \[TOOBIG\] Literal too large \(limit 8192 octets\)/,
      );
      expect(await u.cmd("l", "LOGIN alice alice-secret-1")).toMatch(/l OK/);
      const msg = `Subject: big\r\n\r\n${"b".repeat(20_000)}\r\n`;
      u.send(`b APPEND INBOX {${msg.length}}\r\n`);
      await u.until(/\+ [^\r]*\r\n/);
      u.send(`${msg}\r\n`);
      expect(await u.until(/b (OK|NO)[^\r]*\r\n/)).toMatch(/b OK \[APPENDUID/);
      u.close();
    } finally {
      await own.stop();
    }
  });
});

describe("MAX_BAD_COMMANDS", () => {
  it("says BYE after the limit of bad commands in a row", async () => {
    const t = await Transcript.connect(srv.port);
    for (let i = 0; i < 3; i++) expect(await t.cmd(`b${i}`, "BOGUS")).toMatch(/BAD/);
    t.send("b4 BOGUS\r\n");
    expect(await t.until(/\* BYE[^\r]*\r\n/)).toMatch(/Too many invalid commands/);
    await t.waitClosed();
  });

  it("counts only bad commands in a row", async () => {
    const t = await Transcript.connect(srv.port);
    for (let i = 0; i < 10; i++) {
      expect(await t.cmd(`b${i}`, "BOGUS")).toMatch(/BAD/);
      expect(await t.cmd(`n${i}`, "NOOP")).toMatch(/OK/);
    }
    t.close();
  });
});

describe("idle timeout (RFC 3501 §5.4), and IDLE keeps a session alive", () => {
  it("logs out a silent client", async () => {
    const t = await Transcript.connect(srv.port);
    const started = Date.now();
    expect(await t.until(/\* BYE[^\r]*\r\n/, 3000)).toMatch(/Autologout/);
    expect(Date.now() - started).toBeGreaterThanOrEqual(350);
    await t.waitClosed();
  });

  it("does not log out a client in IDLE", async () => {
    const t = await Transcript.connect(srv.port);
    await t.cmd("l", "LOGIN alice alice-secret-1");
    await t.cmd("s", "SELECT INBOX");
    t.send("i IDLE\r\n");
    await t.until(/\+ idling\r\n/);
    await new Promise((r) => setTimeout(r, 1000));
    expect(t.closed).toBe(false);
    t.send("DONE\r\n");
    expect(await t.until(/i OK[^\r]*\r\n/)).toMatch(/IDLE terminated/);
    t.close();
  });
});

describe("connections per IP and per account", () => {
  it("refuses connections over the per-address limit with BYE [UNAVAILABLE]", async () => {
    const own = await startServer({ limits: { maxConnectionsPerIp: 3 } });
    try {
      const held = await Promise.all([0, 1, 2].map(() => Transcript.connect(own.port)));
      const fourth = await Transcript.connect(own.port).catch((e: Error) => e);
      // the greeting line is consumed by connect(): it was the BYE
      expect(fourth).toBeInstanceOf(Transcript);
      await (fourth as Transcript).waitClosed();
      held[0]!.close();
      await new Promise((r) => setTimeout(r, 100));
      const again = await Transcript.connect(own.port);
      expect(await again.cmd("n", "NOOP")).toMatch(/n OK/);
      for (const h of [...held, again]) h.close();
    } finally {
      await own.stop();
    }
  });

  it("refuses a login over the per-account limit with [LIMIT] and frees the slot on logout", async () => {
    const a = await Transcript.connect(srv.port);
    const b = await Transcript.connect(srv.port);
    const c = await Transcript.connect(srv.port);
    expect(await a.cmd("l", "LOGIN bob bob-secret-2")).toMatch(/l OK/);
    expect(await b.cmd("l", "LOGIN bob bob-secret-2")).toMatch(/l OK/);
    expect(await c.cmd("l", "LOGIN bob bob-secret-2")).toMatch(/l NO \[LIMIT\]/);
    await a.cmd("o", "LOGOUT");
    await a.waitClosed();
    await new Promise((r) => setTimeout(r, 50));
    expect(await c.cmd("l2", "LOGIN bob bob-secret-2")).toMatch(/l2 OK/);
    b.close();
    c.close();
  });
});

describe("a client that leaves during LOGIN", () => {
  it("holds no per-account slot afterwards", async () => {
    const memory = memoryDirectory();
    const slow: Directory = {
      ...memory,
      async authenticate(login, password) {
        await new Promise((r) => setTimeout(r, 200));
        return memory.authenticate(login, password);
      },
    };
    const own = await startServer({ directory: slow, limits: { maxConnectionsPerUser: 1 } });
    try {
      const gone = await Transcript.connect(own.port);
      gone.send("l LOGIN bob bob-secret-2\r\n");
      gone.close(); // before the directory answers
      await new Promise((r) => setTimeout(r, 400));
      const next = await Transcript.connect(own.port);
      expect(await next.cmd("l", "LOGIN bob bob-secret-2")).toMatch(/l OK/);
      next.close();
    } finally {
      await own.stop();
    }
  });
});

describe("auth failures before a delay", () => {
  it("answers failures slowly once an address has failed the configured number of times", async () => {
    const own = await startServer({ limits: { authFailuresBeforeDelay: 2, authFailureDelayMs: 500 } });
    try {
      const t = await Transcript.connect(own.port);
      const timed = async (tag: string): Promise<number> => {
        const t0 = Date.now();
        expect(await t.cmd(tag, "LOGIN alice wrong")).toMatch(/NO \[AUTHENTICATIONFAILED\]/);
        return Date.now() - t0;
      };
      expect(await timed("a")).toBeLessThan(300);
      expect(await timed("b")).toBeGreaterThanOrEqual(480);
      expect(await timed("c")).toBeGreaterThanOrEqual(480);
      t.close();
    } finally {
      await own.stop();
    }
  });
});

describe("a client that disconnects mid-APPEND", () => {
  it("leaves no partial message", async () => {
    const t = await Transcript.connect(srv.port);
    await t.cmd("l", "LOGIN small small-secret-3");
    await t.cmd("c", "CREATE Cut");
    t.send("a APPEND Cut {3000}\r\n");
    await t.until(/\+ [^\r]*\r\n/);
    t.send(`Subject: cut\r\n\r\n${"z".repeat(1000)}`);
    await new Promise((r) => setTimeout(r, 100));
    t.close();
    await new Promise((r) => setTimeout(r, 100));
    const u = await Transcript.connect(srv.port);
    await u.cmd("l", "LOGIN small small-secret-3");
    expect(await u.cmd("s", "STATUS Cut (MESSAGES)")).toMatch(/MESSAGES 0/);
    const dir = join(srv.root, "small", ".Cut");
    for (const sub of ["tmp", "new", "cur"]) expect(await readdir(join(dir, sub))).toEqual([]);
    u.close();
  });

  it("leaves no partial message with a non-synchronizing literal (LITERAL+) either", async () => {
    const t = await Transcript.connect(srv.port);
    await t.cmd("l", "LOGIN small small-secret-3");
    await t.cmd("c", "CREATE CutPlus");
    t.send(`a APPEND CutPlus (\\Seen) {3000+}\r\nSubject: cut\r\n\r\n${"y".repeat(1500)}`);
    await new Promise((r) => setTimeout(r, 100));
    t.close();
    await new Promise((r) => setTimeout(r, 100));
    const dir = join(srv.root, "small", ".CutPlus");
    for (const sub of ["tmp", "new", "cur"]) expect(await readdir(join(dir, sub))).toEqual([]);
    const u = await Transcript.connect(srv.port);
    await u.cmd("l", "LOGIN small small-secret-3");
    expect(await u.cmd("s", "STATUS CutPlus (MESSAGES)")).toMatch(/MESSAGES 0/);
    u.close();
  });

  it("over quota gets [OVERQUOTA] and stores nothing", async () => {
    const t = await Transcript.connect(srv.port);
    await t.cmd("l", "LOGIN small small-secret-3");
    const body = `Subject: big\r\n\r\n${"q".repeat(2500)}\r\n`;
    t.send(`a APPEND INBOX {${body.length}}\r\n`);
    await t.until(/\+ [^\r]*\r\n/);
    t.send(`${body}\r\n`);
    expect(await t.until(/a (OK|NO)[^\r]*\r\n/)).toMatch(/a NO \[OVERQUOTA\]/);
    expect(await t.cmd("s", "STATUS INBOX (MESSAGES)")).toMatch(/MESSAGES 0/);
    t.close();
  });
});

describe("LOGINDISABLED before TLS", () => {
  it("advertises LOGINDISABLED and refuses LOGIN until STARTTLS", async () => {
    const own = await startServer({ loginDisabledWithoutTls: true });
    try {
      const t = await Transcript.connect(own.port);
      const caps = await t.cmd("c", "CAPABILITY");
      expect(caps).toMatch(/LOGINDISABLED/);
      expect(caps).not.toMatch(/AUTH=PLAIN/);
      expect(await t.cmd("l", "LOGIN alice alice-secret-1")).toMatch(/l NO \[PRIVACYREQUIRED\]/);
      t.close();
      const s = await Transcript.connect(own.tlsPort, true);
      expect(await s.cmd("c", "CAPABILITY")).toMatch(/AUTH=PLAIN/);
      expect(await s.cmd("l", "LOGIN alice alice-secret-1")).toMatch(/l OK/);
      s.close();
    } finally {
      await own.stop();
    }
  });
});
