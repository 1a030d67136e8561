/**
 * Protocol transcripts against the server on the real Maildir++ store:
 * several sessions on one mailbox, IDLE, CONDSTORE, UIDPLUS/MOVE, ESEARCH,
 * LIST-EXTENDED, charset-aware SEARCH, STARTTLS, AUTHENTICATE, COMPRESS,
 * and malformed input.
 */
import tls from "node:tls";
import zlib from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMaildirStore } from "../../src/store/index.js";
import { fixture, startServer, type TestServer, Transcript } from "./support.js";

let srv: TestServer;
beforeAll(async () => {
  srv = await startServer();
});
afterAll(async () => {
  await srv?.stop();
});

async function login(user = "alice", password = "alice-secret-1"): Promise<Transcript> {
  const t = await Transcript.connect(srv.port);
  expect(await t.cmd("l", `LOGIN ${user} ${password}`)).toMatch(/l OK/);
  return t;
}

async function append(t: Transcript, mailbox: string, msg: Buffer | string, flags = ""): Promise<string> {
  const b = Buffer.isBuffer(msg) ? msg : Buffer.from(msg);
  t.send(`ap APPEND ${mailbox} ${flags ? `(${flags}) ` : ""}{${b.length}+}\r\n`);
  t.send(b);
  t.send("\r\n");
  return t.until(/ap (OK|NO|BAD).*\r\n/);
}

const simple = (subject: string, body = "hello"): string =>
  `From: a@example.org\r\nTo: b@example.org\r\nSubject: ${subject}\r\nDate: Mon, 6 Mar 2023 10:00:00 +0000\r\n\r\n${body}\r\n`;

describe("several sessions on one mailbox", () => {
  it("sees flag changes, expunges and new mail of the others, in the right order", async () => {
    const a = await login();
    const b = await login();
    await a.cmd("c", "CREATE Shared");
    for (let i = 1; i <= 4; i++) expect(await append(a, "Shared", simple(`m${i}`))).toMatch(/APPENDUID/);
    await a.cmd("s", "SELECT Shared");
    expect(await b.cmd("s", "SELECT Shared")).toMatch(/\* 4 EXISTS/);

    await a.cmd("f", "STORE 2 +FLAGS (\\Flagged)");
    const noop = await b.cmd("n", "NOOP");
    expect(noop).toMatch(/\* 2 FETCH \(FLAGS \(\\Flagged\) UID 2\)/);

    await a.cmd("d", "STORE 2:3 +FLAGS.SILENT (\\Deleted)");
    expect(await a.cmd("x", "EXPUNGE")).toMatch(/\* 3 EXPUNGE\r\n\* 2 EXPUNGE/);
    // RFC 3501 §7.4.1: no EXPUNGE during FETCH, it waits for the next command that allows it
    const fetch = await b.cmd("f", "FETCH 1:4 (UID)");
    expect(fetch).not.toMatch(/EXPUNGE/);
    expect(fetch).toMatch(/\* 4 FETCH \(UID 4\)/);
    const later = await b.cmd("n2", "NOOP");
    expect(later).toMatch(/\* 3 EXPUNGE\r\n\* 2 EXPUNGE/);
    expect((await b.cmd("f2", "FETCH 1:* (UID)")).match(/\* \d+ FETCH/g)).toHaveLength(2);

    await append(a, "Shared", simple("m5"));
    expect(await b.cmd("n3", "NOOP")).toMatch(/\* 3 EXISTS/);
    a.close();
    b.close();
  });

  it("IDLE pushes EXISTS, flag changes and EXPUNGE without a command (RFC 2177)", async () => {
    const a = await login();
    const b = await login();
    await a.cmd("c", "CREATE Idle");
    await append(a, "Idle", simple("first"));
    await b.cmd("s", "SELECT Idle");
    b.send("i IDLE\r\n");
    await b.until(/\+ idling\r\n/);
    await append(a, "Idle", simple("second"));
    await b.until(/\* 2 EXISTS\r\n/);
    await a.cmd("s", "SELECT Idle");
    await a.cmd("st", "STORE 1 +FLAGS (\\Answered)");
    await b.until(/\* 1 FETCH \(FLAGS \(\\Answered[^)]*\) UID 1\)\r\n/);
    await a.cmd("d", "STORE 1 +FLAGS (\\Deleted)");
    await a.cmd("x", "EXPUNGE");
    await b.until(/\* 1 EXPUNGE\r\n/);
    b.send("DONE\r\n");
    await b.until(/i OK IDLE terminated\r\n/);
    a.close();
    b.close();
  });
});

describe("changes from another process", () => {
  it("IDLE reports a delivery made through a separate store instance (as LMTP in its own process)", async () => {
    const t = await login("bob", "bob-secret-2");
    await t.cmd("s", "SELECT INBOX");
    t.send("i IDLE\r\n");
    await t.until(/\+ idling\r\n/);
    const other = createMaildirStore({ root: srv.root, fsync: false, defaultQuotaBytes: 10 * 1024 ** 2 });
    try {
      const user = await other.open("bob");
      await user.append("INBOX", Buffer.from(simple("delivered elsewhere")));
      expect(await t.until(/\* \d+ EXISTS\r\n/, 10_000)).toMatch(/EXISTS/);
    } finally {
      await other.close();
    }
    t.send("DONE\r\n");
    await t.until(/i OK[^\r]*\r\n/);
    expect(await t.cmd("f", "FETCH * (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")).toMatch(
      /Subject: delivered elsewhere/,
    );
    t.close();
  });

  it("drain says BYE to every session", async () => {
    const own = await startServer();
    try {
      const t = await Transcript.connect(own.port);
      await t.cmd("l", "LOGIN alice alice-secret-1");
      const drained = own.server.drain(2000);
      expect(await t.until(/\* BYE[^\r]*\r\n/)).toMatch(/\[UNAVAILABLE\] Server shutting down/);
      await t.waitClosed();
      await drained;
    } finally {
      await own.stop();
    }
  });
});

describe("UIDPLUS, MOVE, COPY, EXPUNGE", () => {
  it("answers APPENDUID/COPYUID, moves with untagged COPYUID, and asks to TRYCREATE", async () => {
    const t = await login();
    await t.cmd("c", "CREATE Src");
    await t.cmd("c2", "CREATE Dst");
    for (let i = 0; i < 3; i++) await append(t, "Src", simple(`x${i}`));
    await t.cmd("s", "SELECT Src");
    const copy = await t.cmd("cp", "UID COPY 1:2 Dst");
    expect(copy).toMatch(/cp OK \[COPYUID \d+ 1:2 1:2\]/);
    expect(await t.cmd("cp2", "COPY 1 Nowhere")).toMatch(/cp2 NO \[TRYCREATE\]/);
    const mv = await t.cmd("mv", "MOVE 2:3 Dst");
    expect(mv).toMatch(/\* OK \[COPYUID \d+ 2:3 3:4\][^\r]*\r\n\* 3 EXPUNGE\r\n\* 2 EXPUNGE\r\nmv OK/);
    expect(await t.cmd("st", "STATUS Dst (MESSAGES UIDNEXT)")).toMatch(
      /\* STATUS "Dst" \(MESSAGES 4 UIDNEXT 5\)/,
    );
    await t.cmd("s2", "SELECT Dst");
    await t.cmd("d", "STORE 1:4 +FLAGS.SILENT (\\Deleted)");
    expect(await t.cmd("ux", "UID EXPUNGE 2:3")).toMatch(/\* 3 EXPUNGE\r\n\* 2 EXPUNGE\r\nux OK/);
    expect(await t.cmd("cl", "CLOSE")).toMatch(/cl OK/);
    expect(await t.cmd("st2", "STATUS Dst (MESSAGES)")).toMatch(/MESSAGES 0/);
    t.close();
  });
});

describe("CONDSTORE (RFC 7162)", () => {
  it("reports MODSEQ, honours UNCHANGEDSINCE and CHANGEDSINCE, searches by MODSEQ", async () => {
    const t = await login();
    await t.cmd("c", "CREATE Cond");
    for (let i = 0; i < 3; i++) await append(t, "Cond", simple(`c${i}`));
    expect(await t.cmd("e", "ENABLE CONDSTORE")).toMatch(/\* ENABLED CONDSTORE/);
    const sel = await t.cmd("s", "SELECT Cond (CONDSTORE)");
    const highest = Number(/HIGHESTMODSEQ (\d+)/.exec(sel)![1]);
    const st = await t.cmd("st", "STORE 1 +FLAGS (\\Seen)");
    const m1 = Number(/\* 1 FETCH \(FLAGS \(\\Seen[^)]*\) MODSEQ \((\d+)\)\)/.exec(st)![1]);
    expect(m1).toBeGreaterThan(highest);
    const cond = await t.cmd("u", `STORE 1,2 (UNCHANGEDSINCE ${highest}) +FLAGS (\\Flagged)`);
    expect(cond).toMatch(/u OK \[MODIFIED 1\]/);
    expect(cond).toMatch(/\* 2 FETCH \(FLAGS \(\\Flagged[^)]*\) MODSEQ/);
    const changed = await t.cmd("f", `FETCH 1:* (FLAGS) (CHANGEDSINCE ${highest})`);
    expect(changed.match(/\* \d FETCH/g)).toHaveLength(2);
    expect(changed).not.toMatch(/\* 3 FETCH/);
    expect(await t.cmd("se", `SEARCH MODSEQ ${m1}`)).toMatch(/\* SEARCH 1 2 \(MODSEQ \d+\)/);
    expect(await t.cmd("stt", "STATUS Cond (HIGHESTMODSEQ)")).toMatch(/HIGHESTMODSEQ \d+/);
    t.close();
  });
});

describe("SEARCH (RFC 3501 §6.4.4) on real MIME", () => {
  let t: Transcript;
  beforeAll(async () => {
    t = await login("bob", "bob-secret-2");
    await t.cmd("c", "CREATE Search");
    for (const f of ["nested.eml", "koi8.eml", "plain.eml"]) await append(t, "Search", await fixture(f));
    await t.cmd("s", "SELECT Search");
    await t.cmd("st", "STORE 3 +FLAGS (\\Answered $Work)");
  });
  afterAll(() => t.close());

  const search = async (criteria: string): Promise<string> => {
    const out = await t.cmd("q", `SEARCH ${criteria}`);
    return /\* SEARCH([\d ]*)/.exec(out)?.[1]?.trim() ?? out;
  };

  it.each([
    ["ALL", "1 2 3"],
    ["ANSWERED", "3"],
    ["UNANSWERED", "1 2"],
    ["KEYWORD $Work", "3"],
    ["FROM juergen", "1"],
    ["FROM Müller", "1"], // encoded word in From, decoded before matching
    ["SUBJECT grüße", "1"],
    ["SUBJECT привет", "2"], // KOI8-R encoded word
    ["BODY zählen", "1"], // quoted-printable ISO-8859-1 body
    ["BODY Grüße", "1"], // base64 UTF-8 HTML part
    ["BODY мир", "2"], // 8-bit KOI8-R body
    ["BODY pangolin", "1"], // inside the attached message/rfc822
    ["TEXT lunch", "3"],
    ["HEADER Message-ID inner.42", ""], // only top-level headers
    ["HEADER In-Reply-To prev.1", "1"],
    ['HEADER X-Nope ""', ""],
    ["TO alice NOT FROM carol", "1 2"],
    ["OR FROM ivan FROM carol", "2 3"],
    ["SENTBEFORE 1-Feb-2023", "3"],
    ["SENTON 1-Feb-2023", "2"],
    ["SENTSINCE 14-Mar-2023", "1"],
    ["LARGER 1000", "1"],
    ["SMALLER 300", "2 3"],
    ["UID 2:*", "2 3"],
    ["2,3 NOT ANSWERED", "2"],
    ["(FROM ivan) (SUBJECT привет)", "2"],
    ["NEW", "1 2 3"], // \Recent in this session (it selected first) and not \Seen
    ["OLD", ""],
    ["RECENT SEEN", ""],
    ["ON 1-Jan-1990", ""],
  ])("SEARCH CHARSET UTF-8 %s → %s", async (criteria, expected) => {
    // non-ASCII goes in a literal, as clients send it
    const args = criteria.replace(
      /([^\s()]*[^\x00-\x7f][^\s()]*)/g,
      (w) => `{${Buffer.byteLength(w)}+}\r\n${w}`,
    );
    expect(await search(`CHARSET UTF-8 ${args}`)).toBe(expected);
  });

  it("answers ESEARCH for RETURN (RFC 4731) and UID SEARCH with UIDs", async () => {
    expect(await t.cmd("e", "SEARCH RETURN (MIN MAX COUNT) ALL")).toMatch(
      /\* ESEARCH \(TAG "e"\) MIN 1 MAX 3 COUNT 3/,
    );
    expect(await t.cmd("e2", "UID SEARCH RETURN () FROM carol")).toMatch(/\* ESEARCH \(TAG "e2"\) UID ALL 3/);
    expect(await t.cmd("e3", "SEARCH RETURN (COUNT) FROM nobody")).toMatch(/\* ESEARCH \(TAG "e3"\) COUNT 0/);
  });

  it("refuses unknown charsets with BADCHARSET and bad keys with BAD", async () => {
    expect(await t.cmd("b1", "SEARCH CHARSET X-MARTIAN TEXT a")).toMatch(/b1 NO \[BADCHARSET/);
    expect(await t.cmd("b2", "SEARCH FROBNICATE")).toMatch(/b2 BAD .*unknown search key/);
    expect(await t.cmd("b3", "SEARCH SINCE 32-Foo-2020")).toMatch(/b3 BAD .*invalid date/);
    expect(await t.cmd("b4", "SEARCH 99")).toMatch(/b4 OK/);
  });
});

describe("mailboxes: LIST-EXTENDED, LIST-STATUS, SPECIAL-USE, CHILDREN, NAMESPACE, QUOTA, ID", () => {
  it("lists with attributes, patterns and status", async () => {
    const t = await login("bob", "bob-secret-2");
    await t.cmd("c1", "CREATE Archive/2024/");
    await t.cmd("c2", "CREATE Sent (USE (\\Sent))");
    await t.cmd("c3", "CREATE Entw&APw-rfe");
    await t.cmd("sub", "SUBSCRIBE Archive/2024");
    const all = await t.cmd("l1", 'LIST "" "*"');
    expect(all).toMatch(/\* LIST \(\\HasNoChildren\) "\/" "?INBOX"?\r\n/);
    expect(all).toMatch(/\* LIST \(\\HasChildren\) "\/" "Archive"/);
    expect(all).toMatch(/\* LIST \(\\HasNoChildren \\Sent\) "\/" "Sent"/);
    expect(all).toMatch(/"Entw&APw-rfe"/);
    expect(await t.cmd("l2", 'LIST "" "%"')).not.toMatch(/Archive\/2024/);
    expect(await t.cmd("l3", 'LIST "Archive/" "%"')).toMatch(/"Archive\/2024"/);
    expect(await t.cmd("l4", 'LIST "" ""')).toMatch(/\* LIST \(\\Noselect\) "\/" ""/);
    const sub = await t.cmd("l5", 'LIST (SUBSCRIBED) "" "*"');
    expect(sub).toMatch(/\* LIST \([^)]*\\Subscribed[^)]*\) "\/" "Archive\/2024"/);
    expect(sub).not.toMatch(/"Sent"/);
    expect(await t.cmd("l6", 'LIST (SPECIAL-USE) "" "*"')).toMatch(
      /^\* LIST \([^)]*\\Sent\) "\/" "Sent"\r\nl6 OK/,
    );
    expect(await t.cmd("l7", 'LIST "" (INBOX Sent) RETURN (STATUS (MESSAGES UNSEEN))')).toMatch(
      /\* LIST [^\r]*"Sent"\r\n\* STATUS "Sent" \(MESSAGES 0 UNSEEN 0\)/,
    );
    expect(await t.cmd("l8", 'LSUB "" "*"')).toMatch(/\* LSUB \(\) "\/" "Archive\/2024"/);
    expect(await t.cmd("ns", "NAMESPACE")).toMatch(/\* NAMESPACE \(\("" "\/"\)\) NIL NIL/);
    expect(await t.cmd("q", "GETQUOTAROOT INBOX")).toMatch(
      /\* QUOTAROOT INBOX ""\r\n\* QUOTA "" \(STORAGE \d+ 51200\)/,
    );
    expect(await t.cmd("q2", 'SETQUOTA "" (STORAGE 1)')).toMatch(/q2 NO/);
    expect(await t.cmd("id", 'ID ("name" "vitest")')).toMatch(/\* ID \("name" "mailinfra"/);
    expect(await t.cmd("d", "DELETE INBOX")).toMatch(/d NO \[NOPERM\]/);
    expect(await t.cmd("d2", "DELETE Nope")).toMatch(/d2 NO \[NONEXISTENT\]/);
    expect(await t.cmd("c4", "CREATE Sent")).toMatch(/c4 NO \[ALREADYEXISTS\]/);
    expect(await t.cmd("c5", "CREATE ../evil")).toMatch(/c5 NO/);
    expect(await t.cmd("r", "RENAME Entw&APw-rfe Drafts")).toMatch(/r OK/);
    expect(await t.cmd("sel", "SELECT Nope")).toMatch(/sel NO \[NONEXISTENT\]/);
    expect(await t.cmd("ex", "EXAMINE Drafts")).toMatch(/ex OK \[READ-ONLY\]/);
    expect(await t.cmd("st", "STORE 1 +FLAGS (\\Seen)")).toMatch(/st (NO|BAD)/);
    expect(await t.cmd("un", "UNSELECT")).toMatch(/un OK/);
    expect(await t.cmd("f", "FETCH 1 FLAGS")).toMatch(/f BAD/);
    t.close();
  });
});

describe("authentication and transport", () => {
  it("AUTHENTICATE PLAIN with SASL-IR and with a continuation; wrong passwords get AUTHENTICATIONFAILED", async () => {
    const ir = Buffer.from("\0alice\0alice-secret-1").toString("base64");
    const t = await Transcript.connect(srv.port);
    expect(await t.cmd("a", `AUTHENTICATE PLAIN ${ir}`)).toMatch(/a OK \[CAPABILITY [^\]]*UIDPLUS/);
    t.close();
    const u = await Transcript.connect(srv.port);
    u.send("b AUTHENTICATE PLAIN\r\n");
    await u.until(/\+ \r\n/);
    u.send(`${Buffer.from("\0alice\0wrong").toString("base64")}\r\n`);
    expect(await u.until(/b NO.*\r\n/)).toMatch(/\[AUTHENTICATIONFAILED\]/);
    u.send("c AUTHENTICATE PLAIN\r\n");
    await u.until(/\+ \r\n/);
    u.send("*\r\n");
    expect(await u.until(/c BAD.*\r\n/)).toMatch(/cancel/);
    expect(await u.cmd("d", "LOGIN alice nope")).toMatch(/d NO \[AUTHENTICATIONFAILED\]/);
    u.close();
  });

  it("STARTTLS upgrades the connection and discards pipelined plaintext", async () => {
    const t = await Transcript.connect(srv.port);
    expect(await t.cmd("c", "CAPABILITY")).toMatch(/STARTTLS/);
    t.send("s STARTTLS\r\nx NOOP\r\n");
    await t.until(/s OK.*\r\n/);
    const secure = tls.connect({ socket: t.socket, rejectUnauthorized: false, servername: "localhost" });
    await new Promise((r) => secure.once("secureConnect", r));
    t.upgrade(secure);
    const caps = await t.cmd("c2", "CAPABILITY");
    expect(caps).not.toMatch(/STARTTLS/);
    expect(caps).not.toMatch(/x OK/);
    expect(await t.cmd("l", "LOGIN alice alice-secret-1")).toMatch(/l OK/);
    t.close();
  });

  it("implicit TLS works", async () => {
    const t = await Transcript.connect(srv.tlsPort, true);
    expect(await t.cmd("l", "LOGIN alice alice-secret-1")).toMatch(/l OK/);
    t.close();
  });

  it("COMPRESS=DEFLATE (RFC 4978) carries the session after the OK", async () => {
    const t = await login();
    t.send("z COMPRESS DEFLATE\r\n");
    await t.until(/z OK.*\r\n/);
    const deflate = zlib.createDeflateRaw();
    const inflate = zlib.createInflateRaw();
    const raw = t.socket;
    raw.removeAllListeners("data");
    let text = "";
    inflate.on("data", (d: Buffer) => {
      text += d.toString("latin1");
    });
    raw.on("data", (d: Buffer) => inflate.write(d));
    deflate.on("data", (d: Buffer) => raw.write(d));
    const send = (s: string): void => {
      deflate.write(s);
      deflate.flush(zlib.constants.Z_SYNC_FLUSH);
    };
    const waitFor = async (re: RegExp): Promise<void> => {
      for (let i = 0; i < 200 && !re.test(text); i++) await new Promise((r) => setTimeout(r, 10));
      expect(text).toMatch(re);
    };
    send('a LIST "" INBOX\r\n');
    await waitFor(/a OK/);
    expect(text).toMatch(/\* LIST \([^)]*\) "\/" "?INBOX"?/);
    send("b COMPRESS DEFLATE\r\n");
    await waitFor(/b NO \[COMPRESSIONACTIVE\]/);
    send("c LOGOUT\r\n");
    await waitFor(/c OK/);
    raw.destroy();
  });
});

describe("malformed input gets BAD, never a crash", () => {
  it("answers every kind of garbage and keeps serving", async () => {
    const t = await login();
    const garbage = [
      "",
      "   ",
      "*",
      "a",
      "a NOSUCH",
      "a FETCH",
      "a SELECT",
      'a LOGIN "x',
      "a SELECT (((",
      "a STORE 1 +FLAGS (\\Bogus)",
      "a UID",
      "a UID NOOP",
      "a SEARCH OR",
      "a LIST",
      "a APPEND INBOX {abc}",
      "\x00\x01\x02",
      "a SELECT &Jjo!",
    ];
    let ok = 0;
    for (const [i, g] of garbage.entries()) {
      t.send(`${g}\r\n`);
      const out = await t.until(/(^|\n)(\S+) (BAD|NO|OK)[^\r]*\r\n/);
      expect(out).toMatch(/BAD|NO/);
      ok++;
      // the bad-command counter (limit 5 here) is reset by a good command
      if (i % 3 === 2) expect(await t.cmd(`n${i}`, "NOOP")).toMatch(/OK/);
    }
    expect(ok).toBe(garbage.length);
    expect(await t.cmd("z", "SELECT INBOX")).toMatch(/z OK/);
    t.close();
  });

  it("survives random bytes from many clients", async () => {
    let seed = 42;
    const rnd = (): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed;
    };
    const clients = await Promise.all(Array.from({ length: 10 }, () => Transcript.connect(srv.port)));
    for (const c of clients) {
      const bytes = Buffer.alloc(2000);
      for (let i = 0; i < bytes.length; i++) bytes[i] = rnd() % 5 === 0 ? 0x0a : rnd() & 0xff;
      c.send(bytes);
    }
    await new Promise((r) => setTimeout(r, 300));
    for (const c of clients) c.close();
    const t = await login();
    expect(await t.cmd("n", "NOOP")).toMatch(/n OK/);
    t.close();
  });
});
