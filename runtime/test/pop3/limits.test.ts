// Each named POP3 limit (src/pop3/limits.ts) and the directory-down path.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Conversation, harness, type Pop3Harness } from "./harness.js";

let h: Pop3Harness;
beforeAll(async () => {
  h = await harness();
});
afterAll(async () => {
  await h?.stop();
});

describe("POP3 limits", () => {
  it("maxLineBytes: an overlong line gets -ERR and the session ends", async () => {
    const { port } = await h.start({ tls: false, limits: { maxLineBytes: 100 } });
    const c = new Conversation(port);
    await c.line();
    expect(await c.cmd("NOOP")).toMatch(/^-ERR/); // fine-length line, wrong state: still open
    c.send(`USER ${"x".repeat(200)}`);
    expect(await c.line()).toBe("-ERR Line too long (at most 100 octets)");
    expect(await c.waitClosed()).toBe(true);
  });

  it("maxBadCommands: closed after that many bad commands in a row, good ones reset the count", async () => {
    const { port } = await h.start({ tls: false, limits: { maxBadCommands: 3 } });
    const c = new Conversation(port);
    await c.line();
    expect(await c.cmd("BAD1")).toMatch(/^-ERR/);
    expect(await c.cmd("BAD2")).toMatch(/^-ERR/);
    expect(await c.cmd("CAPA")).toMatch(/^\+OK/);
    await c.multi();
    expect(await c.cmd("BAD3")).toMatch(/^-ERR/);
    expect(await c.cmd("BAD4")).toMatch(/^-ERR/);
    expect(c.closed).toBe(false);
    expect(await c.cmd("BAD5")).toMatch(/too many bad commands/);
    expect(await c.waitClosed()).toBe(true);
  });

  it("idleTimeoutSeconds: an idle session is logged out without UPDATE", async () => {
    const { port } = await h.start({ tls: false, limits: { idleTimeoutSeconds: 1 } });
    await (await h.store.open("alice")).append("INBOX", Buffer.from("Subject: keep\r\n\r\nx\r\n"));
    const c = new Conversation(port);
    await c.line();
    await c.cmd("USER alice");
    expect(await c.cmd("PASS alice-secret-1")).toMatch(/^\+OK/);
    expect(await c.cmd("DELE 1")).toMatch(/^\+OK/);
    const started = Date.now();
    expect(await c.line(3000)).toMatch(/^-ERR Autologout/);
    expect(await c.waitClosed()).toBe(true);
    expect(Date.now() - started).toBeGreaterThanOrEqual(800);
    await new Promise((r) => setTimeout(r, 100));
    expect((await (await h.store.open("alice")).status("INBOX")).messages).toBe(1);
  });

  it("maxConnectionsPerIp: the next connection is refused with [SYS/TEMP]", async () => {
    const { port } = await h.start({ tls: false, limits: { maxConnectionsPerIp: 2 } });
    const a = new Conversation(port);
    const b = new Conversation(port);
    expect(await a.line()).toMatch(/^\+OK/);
    expect(await b.line()).toMatch(/^\+OK/);
    const c = new Conversation(port);
    expect(await c.line()).toBe("-ERR [SYS/TEMP] Too many connections from your address");
    expect(await c.waitClosed()).toBe(true);
    a.close();
    await a.waitClosed();
    await new Promise((r) => setTimeout(r, 100));
    const d = new Conversation(port);
    expect(await d.line()).toMatch(/^\+OK/);
    b.close();
    d.close();
  });

  it("maxConnectionsPerUser: a login over the limit is refused before the directory is asked", async () => {
    const { port } = await h.start({ tls: false, limits: { maxConnectionsPerUser: 1 } });
    const a = new Conversation(port);
    await a.line();
    await a.cmd("USER carol");
    expect(await a.cmd("PASS carol-secret-3")).toMatch(/^\+OK/);
    // login names are counted case-insensitively
    const b = new Conversation(port);
    await b.line();
    await b.cmd("USER Carol");
    // refused by the limit ([SYS/TEMP]), not by the maildrop lock ([IN-USE]); the password is not even checked
    expect(await b.cmd("PASS wrong-anyway")).toBe(
      "-ERR [SYS/TEMP] Too many connections for this account, try again later",
    );
    // a failed login gives its slot back; QUIT frees the session's
    const c = new Conversation(port);
    await c.line();
    expect(await a.cmd("QUIT")).toMatch(/^\+OK/);
    await a.waitClosed();
    await c.cmd("USER carol");
    expect(await c.cmd("PASS wrong")).toMatch(/^-ERR \[AUTH\]/);
    await b.cmd("USER carol");
    expect(await b.cmd("PASS carol-secret-3")).toMatch(/^\+OK/);
    b.close();
    c.close();
  });

  it("a client that leaves while its login is checked leaves no maildrop lock behind", async () => {
    const { port } = await h.start({ tls: false });
    const a = new Conversation(port);
    await a.line();
    a.send("USER carol\r\nPASS carol-secret-3");
    a.close(); // gone before the directory answers
    await new Promise((r) => setTimeout(r, 400));
    const b = new Conversation(port);
    await b.line();
    await b.cmd("USER carol");
    expect(await b.cmd("PASS carol-secret-3")).toMatch(/^\+OK/);
    expect(await b.cmd("QUIT")).toMatch(/^\+OK/);
  });

  it("authFailuresBeforeDelay: after that many failures every login reply waits", async () => {
    const { port } = await h.start({
      tls: false,
      limits: { authFailuresBeforeDelay: 2 },
      pop3: { authFailureDelayMs: 600 },
    });
    const c = new Conversation(port);
    await c.line();
    const attempt = async (password: string) => {
      await c.cmd("USER bob");
      const t = Date.now();
      const reply = await c.cmd(`PASS ${password}`);
      return { reply, ms: Date.now() - t };
    };
    const first = await attempt("wrong1");
    const second = await attempt("wrong2");
    expect(first.reply).toMatch(/^-ERR \[AUTH\]/);
    expect(second.ms).toBeLessThan(500);
    const third = await attempt("bob-secret-2"); // even the right password waits
    expect(third.ms).toBeGreaterThanOrEqual(550);
    expect(third.reply).toMatch(/^\+OK/);
    await c.cmd("QUIT");
  });

  it("robustness: random garbage lines never crash the server, each gets one -ERR", async () => {
    const { port } = await h.start({ tls: false, limits: { maxBadCommands: 10_000 } });
    const c = new Conversation(port);
    await c.line();
    await c.cmd("USER bob");
    expect(await c.cmd("PASS bob-secret-2")).toMatch(/^\+OK/);
    let seed = 42;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed;
    };
    for (let i = 0; i < 300; i++) {
      const len = rand() % 40;
      const bytes = Buffer.alloc(len);
      for (let j = 0; j < len; j++) {
        let b = rand() % 256;
        if (b === 10 || b === 13) b = 32;
        bytes[j] = b;
      }
      // keep clear of the real verbs (QUIT, STLS …): prefix with a byte no verb starts with
      c.send(Buffer.concat([Buffer.from("~"), bytes, Buffer.from("\r\n")]));
      expect(await c.line(), `line ${i}`).toMatch(/^-ERR /);
    }
    expect(await c.cmd("NOOP")).toBe("+OK");
    expect(await c.cmd("QUIT")).toMatch(/^\+OK/);
  });

  it("directory down: -ERR [SYS/TEMP], never [AUTH]", async () => {
    const { port } = await h.start({ tls: false });
    await h.ldap.halt();
    try {
      const c = new Conversation(port);
      await c.line();
      await c.cmd("USER bob");
      expect(await c.cmd("PASS bob-secret-2")).toMatch(/^-ERR \[SYS\/TEMP\]/);
      c.close();
    } finally {
      await h.ldap.resume();
    }
  });
});
