/**
 * RFC 3501 commands and extension corners the other IMAP tests only reach
 * through mbsync or imaplib without asserting them: CHECK, UNSUBSCRIBE,
 * GETQUOTA, UID MOVE, STORE FLAGS / -FLAGS, FETCH INTERNALDATE, RFC822.TEXT
 * and the ALL / FAST / FULL macros, LIST RECURSIVEMATCH and RETURN
 * (CHILDREN), STATUS SIZE, COPY seen by another session that has the target
 * open, AUTHENTICATE refused before TLS under LOGINDISABLED, the untagged
 * responses of SELECT / EXAMINE (and their UIDVALIDITY across a restart),
 * UNSELECT against CLOSE, and the \Seen that FETCH BODY[section] sets. Protocol
 * transcripts for the exact responses, Python's imaplib as the real client.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startServer, type TestServer, Transcript } from "./support.js";

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

async function append(t: Transcript, mailbox: string, msg: string, flags = "", date = ""): Promise<string> {
  const b = Buffer.from(msg);
  t.send(`ap APPEND ${mailbox} ${flags ? `(${flags}) ` : ""}${date ? `"${date}" ` : ""}{${b.length}+}\r\n`);
  t.send(b);
  t.send("\r\n");
  const out = await t.until(/ap (OK|NO|BAD).*\r\n/);
  expect(out).toMatch(/ap OK/);
  return out;
}

const HEADER =
  "From: Ann Sender <ann@example.org>\r\nTo: bob@example.org\r\nSubject: macro test\r\nDate: Mon, 6 Mar 2023 10:00:00 +0000\r\nMessage-ID: <m1@example.org>\r\n\r\n";
const BODY = "the body line one\r\nline two\r\n";
const MSG = HEADER + BODY;

/** Python's imaplib with the script on stdin; secrets in the environment. */
async function imaplib(script: string, env: Record<string, string>): Promise<Record<string, unknown>> {
  const child = spawn("python3", ["-"], { env: { ...process.env, ...env }, stdio: ["pipe", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  child.stdin.end(script);
  const [code] = (await once(child, "exit")) as [number];
  if (code !== 0) throw new Error(`python3 exited ${code}: ${stderr}`);
  return JSON.parse(stdout) as Record<string, unknown>;
}

describe("FETCH INTERNALDATE, RFC822.TEXT, RFC822.HEADER and the macros (RFC 3501 §6.4.5)", () => {
  let t: Transcript;
  beforeAll(async () => {
    t = await login();
    await t.cmd("c", "CREATE Macros");
    await append(t, "Macros", MSG, "\\Flagged", "05-Jun-2023 08:30:15 +0200");
    await t.cmd("s", "SELECT Macros");
  });
  afterAll(() => t.close());

  it("FAST is exactly FLAGS, INTERNALDATE and RFC822.SIZE", async () => {
    const out = await t.cmd("f", "FETCH 1 FAST");
    const m = /\* 1 FETCH \((.*)\)\r\n/.exec(out);
    expect(m).not.toBeNull();
    expect(m![1]).toMatch(
      new RegExp(
        `^FLAGS \\(\\\\Flagged \\\\Recent\\) INTERNALDATE "[ \\d]\\d-\\w{3}-\\d{4} \\d\\d:\\d\\d:\\d\\d [+-]\\d{4}" RFC822\\.SIZE ${Buffer.byteLength(MSG)}$`,
      ),
    );
  });

  it("ALL adds ENVELOPE; FULL adds ENVELOPE and the non-extensible BODY", async () => {
    const all = await t.cmd("a", "FETCH 1 ALL");
    expect(all).toMatch(
      /\* 1 FETCH \(FLAGS \(\\Flagged \\Recent\) INTERNALDATE "[^"]+" RFC822\.SIZE \d+ ENVELOPE \(/,
    );
    expect(all).toMatch(
      /ENVELOPE \("Mon, 6 Mar 2023 10:00:00 \+0000" "macro test" \(\("Ann Sender" NIL "ann" "example\.org"\)\)/,
    );
    expect(all).not.toMatch(/BODY/);
    const full = await t.cmd("u", "FETCH 1 FULL");
    expect(full).toMatch(/ENVELOPE \(.*\) BODY \("TEXT" "PLAIN" /);
    expect(full).not.toMatch(/BODYSTRUCTURE/);
    // BODY (non-extensible) stops after the line count: no MD5 / disposition / language fields
    expect(full).toMatch(
      new RegExp(
        `BODY \\("TEXT" "PLAIN" \\("CHARSET" "us-ascii"\\) NIL NIL "7BIT" ${Buffer.byteLength(BODY)} 2\\)\\)\\r\\n`,
        "i",
      ),
    );
    // none of the macros sets \Seen
    expect(await t.cmd("fl", "FETCH 1 FLAGS")).toMatch(/FLAGS \(\\Flagged \\Recent\)\)/);
  });

  it("INTERNALDATE is the APPEND's date-time as the same instant", async () => {
    const out = await t.cmd("i", "FETCH 1 (INTERNALDATE)");
    const m = /INTERNALDATE "(\s?\d{1,2})-(\w{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)"/.exec(out);
    expect(m).not.toBeNull();
    const [, d, mon, y, hh, mm, ss, sign, oh, om] = m!;
    const offset = (sign === "-" ? -1 : 1) * (Number(oh) * 60 + Number(om));
    const month = "JanFebMarAprMayJunJulAugSepOctNovDec".indexOf(mon!) / 3;
    expect(Date.UTC(Number(y), month, Number(d), Number(hh), Number(mm) - offset, Number(ss))).toBe(
      Date.UTC(2023, 5, 5, 6, 30, 15),
    );
  });

  it("RFC822.HEADER is the header without setting \\Seen; RFC822.TEXT is the body and sets \\Seen", async () => {
    const h = await t.cmd("h", "FETCH 1 (RFC822.HEADER)");
    expect(h).toContain(`RFC822.HEADER {${Buffer.byteLength(HEADER)}}\r\n${HEADER}`);
    expect(h).not.toMatch(/\\Seen/);
    // read-only (EXAMINE): RFC822.TEXT returns the body and changes no flag
    const ro = await login();
    expect(await ro.cmd("e", "EXAMINE Macros")).toMatch(/e OK \[READ-ONLY\]/);
    const roText = await ro.cmd("b", "FETCH 1 (RFC822.TEXT)");
    expect(roText).toContain(`RFC822.TEXT {${Buffer.byteLength(BODY)}}\r\n${BODY}`);
    expect(roText).not.toMatch(/FLAGS/);
    ro.close();
    expect(await t.cmd("fl0", "FETCH 1 FLAGS")).not.toMatch(/\\Seen/);
    const b = await t.cmd("b", "FETCH 1 (RFC822.TEXT)");
    expect(b).toContain(`RFC822.TEXT {${Buffer.byteLength(BODY)}}\r\n${BODY}`);
    // RFC 3501 §6.4.5: the implicit \Seen is reported with the FETCH
    expect(b).toMatch(/ FLAGS \(\\Flagged \\Seen \\Recent\)\)\r\n/);
    expect(await t.cmd("fl", "FETCH 1 FLAGS")).toMatch(/\\Seen/);
  });
});

describe("STORE with FLAGS and -FLAGS (RFC 3501 §6.4.6)", () => {
  it("replaces, removes, and reports the resulting flags; UID STORE names the UID", async () => {
    const t = await login();
    await t.cmd("c", "CREATE Flags");
    for (let i = 0; i < 3; i++) await append(t, "Flags", MSG, "\\Seen \\Answered $Old");
    await t.cmd("s", "SELECT Flags");
    const flags = async (seq: number): Promise<string[]> => {
      const out = await t.cmd("g", `FETCH ${seq} FLAGS`);
      const m = new RegExp(`\\* ${seq} FETCH \\(FLAGS \\(([^)]*)\\)\\)`).exec(out);
      expect(m).not.toBeNull();
      // \Recent belongs to this session (it selected first), not to what STORE sets
      expect(m![1]).toMatch(/\\Recent/);
      return m![1]!
        .split(" ")
        .filter((f) => f && f !== "\\Recent")
        .sort();
    };
    expect(await t.cmd("r", "STORE 1 FLAGS (\\Flagged $New)")).toMatch(/\* 1 FETCH \(FLAGS \(/);
    expect(await flags(1)).toEqual(["$New", "\\Flagged"]);
    expect(await t.cmd("m", "STORE 2 -FLAGS (\\Answered $Old)")).toMatch(
      /\* 2 FETCH \(FLAGS \(\\Seen \\Recent\)\)/,
    );
    expect(await flags(2)).toEqual(["\\Seen"]);
    // removing a flag the message does not have changes nothing
    await t.cmd("m2", "STORE 2 -FLAGS (\\Draft)");
    expect(await flags(2)).toEqual(["\\Seen"]);
    expect(await t.cmd("e", "STORE 3 FLAGS ()")).toMatch(/\* 3 FETCH \(FLAGS \(\\Recent\)\)/);
    expect(await flags(3)).toEqual([]);
    // lower case item names are the same command (atoms are case-insensitive)
    expect(await t.cmd("lc", "STORE 3 +flags.silent (\\Deleted)")).toMatch(/lc OK/);
    expect(await flags(3)).toEqual(["\\Deleted"]);
    const uid = /UID (\d+)/.exec(await t.cmd("uf", "FETCH 2 (UID)"))?.[1];
    expect(await t.cmd("us", `UID STORE ${uid} -FLAGS (\\Seen)`)).toMatch(
      new RegExp(`\\* 2 FETCH \\(FLAGS \\(\\\\Recent\\) UID ${uid}\\)`),
    );
    expect(await t.cmd("bad", "STORE 1 FLAGS (\\Recent)")).toMatch(/bad BAD/);
    t.close();
  });
});

describe("UID MOVE (RFC 6851)", () => {
  it("moves by UID with COPYUID and EXPUNGE; a second session sees both mailboxes change", async () => {
    const t = await login();
    const other = await login();
    await t.cmd("c1", "CREATE MoveFrom");
    await t.cmd("c2", "CREATE MoveTo");
    for (let i = 1; i <= 4; i++) await append(t, "MoveFrom", MSG.replace("macro test", `move ${i}`));
    await t.cmd("s", "SELECT MoveFrom");
    expect(await other.cmd("s", "SELECT MoveTo")).toMatch(/\* 0 EXISTS/);
    const uids = [...(await t.cmd("f", "FETCH 1:4 (UID)")).matchAll(/UID (\d+)/g)].map((m) => Number(m[1]));
    const moved = `${uids[1]},${uids[3]}`;
    const out = await t.cmd("mv", `UID MOVE ${moved} MoveTo`);
    // COPYUID in an untagged OK before the expunges (RFC 6851 §4.3), highest sequence first
    expect(out).toMatch(/\* OK \[COPYUID \d+ \d+(:\d+|,\d+) \d+(:\d+|,\d+)\]/);
    expect(out).toMatch(/\* 4 EXPUNGE\r\n\* 2 EXPUNGE\r\nmv OK/);
    const left = await t.cmd("f2", "FETCH 1:* (UID ENVELOPE)");
    expect([...left.matchAll(/UID (\d+)/g)].map((m) => Number(m[1]))).toEqual([uids[0], uids[2]]);
    expect(left).toMatch(/"move 1"/);
    expect(left).toMatch(/"move 3"/);
    const there = await other.cmd("n", "NOOP");
    expect(there).toMatch(/\* 2 EXISTS/);
    expect(await other.cmd("e", "FETCH 1:* (ENVELOPE)")).toMatch(/"move 2"[\s\S]*"move 4"/);
    // UID FETCH names each message by UID even when UID is not asked for (RFC 3501 §6.4.8)
    expect(await t.cmd("uf", `UID FETCH ${uids[2]} (FLAGS)`)).toMatch(
      new RegExp(
        `^\\* 2 FETCH \\((UID ${uids[2]} FLAGS \\([^)]*\\)|FLAGS \\([^)]*\\) UID ${uids[2]})\\)\\r\\nuf OK`,
      ),
    );
    expect(await t.cmd("uf2", `UID FETCH ${uids[1]} (FLAGS)`)).toMatch(/^uf2 OK/); // moved away: nothing
    // a UID that does not exist moves nothing and is not an error (RFC 3501 §6.4.8)
    expect(await t.cmd("mv2", "UID MOVE 999999 MoveTo")).toMatch(/mv2 OK/);
    expect(await t.cmd("mv3", "UID MOVE 1:* NoSuchBox")).toMatch(/mv3 NO \[TRYCREATE\]/);
    t.close();
    other.close();
  });
});

describe("COPY seen by another session with the target open", () => {
  it("the other session gets EXISTS on its next NOOP, and in IDLE without a command", async () => {
    const a = await login();
    const b = await login();
    await a.cmd("c1", "CREATE CopySrc");
    await a.cmd("c2", "CREATE CopyDst");
    await append(a, "CopySrc", MSG);
    await append(a, "CopySrc", MSG);
    await a.cmd("s", "SELECT CopySrc");
    expect(await b.cmd("s", "SELECT CopyDst")).toMatch(/\* 0 EXISTS/);
    expect(await a.cmd("cp", "COPY 1:2 CopyDst")).toMatch(/cp OK \[COPYUID /);
    expect(await b.cmd("n", "NOOP")).toMatch(/\* 2 EXISTS\r\n(\* 2 RECENT\r\n)?n OK/);
    b.send("i IDLE\r\n");
    await b.until(/\+ .*\r\n/);
    expect(await a.cmd("cp2", "COPY 1 CopyDst")).toMatch(/cp2 OK/);
    await b.until(/\* 3 EXISTS\r\n/);
    b.send("DONE\r\n");
    await b.until(/i OK.*\r\n/);
    // the source is unchanged by COPY
    expect(await a.cmd("n", "NOOP")).not.toMatch(/EXPUNGE|EXISTS/);
    a.close();
    b.close();
  });
});

describe("CHECK (RFC 3501 §6.4.1)", () => {
  it("answers OK in the selected state, reports pending updates like NOOP, and is BAD outside it", async () => {
    const a = await login();
    const b = await login();
    await a.cmd("c", "CREATE Checked");
    expect(await a.cmd("k0", "CHECK")).toMatch(/k0 BAD/);
    await b.cmd("s", "SELECT Checked");
    await append(a, "Checked", MSG);
    expect(await b.cmd("k", "CHECK")).toMatch(/\* 1 EXISTS\r\n(\* 1 RECENT\r\n)?k OK/);
    a.close();
    b.close();
  });
});

describe("SUBSCRIBE and UNSUBSCRIBE (RFC 3501 §6.3.6, §6.3.7)", () => {
  it("UNSUBSCRIBE removes the name from LSUB and LIST (SUBSCRIBED), for later sessions too", async () => {
    const t = await login("bob", "bob-secret-2");
    await t.cmd("c", "CREATE Lists/Weekly");
    expect(await t.cmd("s1", "SUBSCRIBE Lists/Weekly")).toMatch(/s1 OK/);
    expect(await t.cmd("l1", 'LSUB "" "*"')).toMatch(/\* LSUB \(\) "\/" "Lists\/Weekly"/);
    expect(await t.cmd("u1", "UNSUBSCRIBE Lists/Weekly")).toMatch(/u1 OK/);
    expect(await t.cmd("l2", 'LSUB "" "*"')).not.toMatch(/Weekly/);
    expect(await t.cmd("l3", 'LIST (SUBSCRIBED) "" "*"')).not.toMatch(/Weekly/);
    expect(await t.cmd("l4", 'LIST "" "*" RETURN (SUBSCRIBED)')).toMatch(
      /\* LIST \(\\HasNoChildren\) "\/" "Lists\/Weekly"/,
    );
    t.close();
    const u = await login("bob", "bob-secret-2");
    expect(await u.cmd("l5", 'LSUB "" "*"')).not.toMatch(/Weekly/);
    // the mailbox itself stays
    expect(await u.cmd("st", "STATUS Lists/Weekly (MESSAGES)")).toMatch(
      /\* STATUS "Lists\/Weekly" \(MESSAGES 0\)/,
    );
    u.close();
  });
});

describe("subscriptions outlive their mailboxes (RFC 3501 §6.3.6, RFC 5258 §3)", () => {
  it("LSUB and LIST (SUBSCRIBED) show a subscribed name that does not exist; plain LIST does not", async () => {
    const t = await login("bob", "bob-secret-2");
    expect(await t.cmd("s1", "SUBSCRIBE Ghost")).toMatch(/s1 OK/);
    await t.cmd("c", "CREATE Renamed/Old");
    await t.cmd("s2", "SUBSCRIBE Renamed/Old");
    expect(await t.cmd("r", "RENAME Renamed/Old Renamed/New")).toMatch(/r OK/);
    await t.cmd("s3", "SUBSCRIBE Phantom/Child");
    const lsub = await t.cmd("l1", 'LSUB "" "*"');
    // subscribed itself: no \Noselect, which in LSUB would mean "only a parent"
    expect(lsub).toMatch(/\* LSUB \(\) "\/" "Ghost"\r\n/);
    expect(lsub).toMatch(/\* LSUB \(\) "\/" "Renamed\/Old"\r\n/);
    expect(lsub).toMatch(/\* LSUB \(\) "\/" "Phantom\/Child"\r\n/);
    const sub = await t.cmd("l2", 'LIST (SUBSCRIBED) "" "*"');
    expect(sub).toMatch(/\* LIST \(\\NonExistent \\Subscribed\) "\/" "Ghost"\r\n/);
    expect(sub).toMatch(/\* LIST \(\\NonExistent \\Subscribed\) "\/" "Renamed\/Old"\r\n/);
    expect(sub).not.toMatch(/"Renamed\/New"/); // the new name was never subscribed
    const plain = await t.cmd("l3", 'LIST "" "*"');
    expect(plain).not.toMatch(/"Ghost"|"Renamed\/Old"|"Phantom/);
    expect(plain).toMatch(/"Renamed\/New"/);
    // a missing parent of a subscribed name: (\NonExistent) + CHILDINFO (RFC 5258 §3.5 table)
    expect(await t.cmd("l4", 'LIST (SUBSCRIBED RECURSIVEMATCH) "" "Phantom"')).toMatch(
      /^\* LIST \(\\NonExistent\) "\/" "Phantom" \("CHILDINFO" \("SUBSCRIBED"\)\)\r\nl4 OK/,
    );
    // no STATUS for a name that does not exist (RFC 5819 §2)
    expect(await t.cmd("l5", 'LIST (SUBSCRIBED) "" "Ghost" RETURN (STATUS (MESSAGES))')).not.toMatch(
      /\* STATUS/,
    );
    expect(await t.cmd("sel", "SELECT Ghost")).toMatch(/sel NO \[NONEXISTENT\]/);
    expect(await t.cmd("u", "UNSUBSCRIBE Ghost")).toMatch(/u OK/);
    expect(await t.cmd("l6", 'LSUB "" "*"')).not.toMatch(/"Ghost"/);
    t.close();
  });
});

describe("GETQUOTA (RFC 9208 §4.2) and STATUS SIZE (RFC 8438)", () => {
  it("GETQUOTA of the root reports usage that grows with an APPEND; an unknown root is NO", async () => {
    const t = await login();
    const usage = async (): Promise<[number, number]> => {
      const out = await t.cmd("q", 'GETQUOTA ""');
      const m = /\* QUOTA "" \(STORAGE (\d+) (\d+)\)\r\nq OK/.exec(out);
      expect(m).not.toBeNull();
      return [Number(m![1]), Number(m![2])];
    };
    const [before, limit] = await usage();
    expect(limit).toBe(10 * 1024); // alice's 10 MiB, in units of 1024 octets
    await t.cmd("c", "CREATE Big");
    await append(t, "Big", `Subject: big\r\n\r\n${"x".repeat(200 * 1024)}\r\n`);
    const [after] = await usage();
    expect(after - before).toBeGreaterThanOrEqual(200);
    expect(after - before).toBeLessThanOrEqual(202);
    expect(await t.cmd("q2", 'GETQUOTA "other"')).toMatch(/q2 NO/);
    t.close();
  });

  it("STATUS (SIZE) is the sum of the messages' RFC822.SIZE", async () => {
    const t = await login("bob", "bob-secret-2");
    await t.cmd("c", "CREATE Sized");
    const a = "Subject: a\r\n\r\nshort\r\n";
    const b = `Subject: b\r\n\r\n${"y".repeat(5000)}\r\n`;
    await append(t, "Sized", a);
    await append(t, "Sized", b);
    expect(await t.cmd("st", "STATUS Sized (SIZE MESSAGES)")).toMatch(
      new RegExp(`\\* STATUS "Sized" \\(SIZE ${Buffer.byteLength(a) + Buffer.byteLength(b)} MESSAGES 2\\)`),
    );
    t.close();
  });
});

describe("LIST-EXTENDED RECURSIVEMATCH and RETURN (CHILDREN) (RFC 5258 §3)", () => {
  it("reports a parent of a subscribed child with CHILDINFO when only the parent matches the pattern", async () => {
    const t = await login("bob", "bob-secret-2");
    for (const name of [
      "Fruit",
      "Fruit/Apple",
      "Fruit/Banana",
      "Tofu",
      "Vegetable",
      "Vegetable/Corn",
      "Eps",
      "Eps/Mamba",
      "Deep/A/B",
    ])
      await t.cmd("c", `CREATE ${name}`);
    for (const name of ["Fruit/Banana", "Tofu", "Eps", "Eps/Mamba", "Deep/A/B"])
      expect(await t.cmd("s", `SUBSCRIBE ${name}`)).toMatch(/s OK/);
    const out = await t.cmd("r", 'LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"');
    // Fruit is not subscribed, but its child is: listed with CHILDINFO and without \Subscribed
    expect(out).toMatch(/\* LIST \((\\HasChildren)?\) "\/" "Fruit" \("CHILDINFO" \("SUBSCRIBED"\)\)\r\n/);
    // Tofu is subscribed itself and has no subscribed child: no CHILDINFO
    expect(out).toMatch(/\* LIST \([^)]*\\Subscribed[^)]*\) "\/" "Tofu"\r\n/);
    // Eps is subscribed and has a subscribed child: both (RFC 5258 §3.5 table, §5 example 9)
    expect(out).toMatch(/\* LIST \([^)]*\\Subscribed[^)]*\) "\/" "Eps" \("CHILDINFO" \("SUBSCRIBED"\)\)\r\n/);
    // a subscribed grandchild counts too
    expect(out).toMatch(/"Deep" \("CHILDINFO" \("SUBSCRIBED"\)\)\r\n/);
    // one response per name (RFC 5258 §3.3)
    expect(out.match(/"Eps"/g)).toHaveLength(1);
    // Vegetable has neither; Fruit/Banana does not match "%"
    expect(out).not.toMatch(/"Vegetable"/);
    expect(out).not.toMatch(/"Fruit\/Banana"/);
    // "*": the children are listed themselves; Eps keeps its CHILDINFO (example 9, "*")
    const star = await t.cmd("r2", 'LIST (SUBSCRIBED RECURSIVEMATCH) "" "*"');
    expect(star).toMatch(/\* LIST \([^)]*\\Subscribed[^)]*\) "\/" "Fruit\/Banana"\r\n/);
    expect(star).toMatch(/"Eps" \("CHILDINFO" \("SUBSCRIBED"\)\)\r\n/);
    expect(star).toMatch(/\* LIST \([^)]*\\Subscribed[^)]*\) "\/" "Eps\/Mamba"\r\n/);
    // Deep/A matches "Deep/%" and has a subscribed child
    expect(await t.cmd("r3", 'LIST (SUBSCRIBED RECURSIVEMATCH) "Deep/" "%"')).toMatch(
      /\* LIST \([^)]*\) "\/" "Deep\/A" \("CHILDINFO" \("SUBSCRIBED"\)\)\r\nr3 OK/,
    );
    // without RECURSIVEMATCH the parent is not reported at all
    const plain = await t.cmd("p", 'LIST (SUBSCRIBED) "" "%"');
    expect(plain).not.toMatch(/"Fruit"/);
    expect(plain).toMatch(/"Tofu"/);
    // RECURSIVEMATCH alone is an error (RFC 5258 §3.1)
    expect(await t.cmd("b", 'LIST (RECURSIVEMATCH) "" "%"')).toMatch(/b BAD/);
    // RETURN (CHILDREN)
    const ch = await t.cmd("ch", 'LIST "" "%" RETURN (CHILDREN)');
    expect(ch).toMatch(/\* LIST \(\\HasChildren\) "\/" "Vegetable"/);
    expect(ch).toMatch(/\* LIST \(\\HasNoChildren\) "\/" "Tofu"/);
    t.close();
  });
});

describe("AUTHENTICATE under LOGINDISABLED (RFC 3501 §6.2.2, §7.2.1)", () => {
  it("refuses AUTHENTICATE PLAIN before TLS (with and without an initial response), accepts it after STARTTLS", async () => {
    const own = await startServer({ loginDisabledWithoutTls: true });
    try {
      const ir = Buffer.from("\0alice\0alice-secret-1").toString("base64");
      const t = await Transcript.connect(own.port);
      expect(await t.cmd("a1", `AUTHENTICATE PLAIN ${ir}`)).toMatch(/a1 NO \[PRIVACYREQUIRED\]/);
      // no continuation is offered: the credentials never travel in plaintext
      const noIr = await t.cmd("a2", "AUTHENTICATE PLAIN");
      expect(noIr).not.toMatch(/^\+/m);
      expect(noIr).toMatch(/a2 NO \[PRIVACYREQUIRED\]/);
      expect(await t.cmd("s", "SELECT INBOX")).toMatch(/s BAD/);
      t.close();

      const r = await imaplib(
        `
import imaplib, json, os, ssl
ctx = ssl.create_default_context(cafile=os.environ["CAFILE"])
ctx.check_hostname = False
out = {}
m = imaplib.IMAP4("127.0.0.1", int(os.environ["PORT"]))
out["caps_before"] = sorted(m.capabilities)
auth = lambda _: ("\\0alice\\0" + os.environ["PW"]).encode()
try:
    m.authenticate("PLAIN", auth)
    out["before_tls"] = "OK"
except imaplib.IMAP4.error as e:
    out["before_tls"] = str(e)
m.starttls(ssl_context=ctx)
out["caps_after"] = sorted(m.capabilities)
out["after_tls"] = m.authenticate("PLAIN", auth)[0]
out["select"] = m.select("INBOX")[0]
m.logout()
print(json.dumps(out))
`,
        { PORT: String(own.port), PW: "alice-secret-1", CAFILE: own.certFile },
      );
      expect(r.caps_before).toContain("LOGINDISABLED");
      expect(r.caps_before).not.toContain("AUTH=PLAIN");
      expect(r.before_tls).toMatch(/PRIVACYREQUIRED/);
      expect(r.caps_after).toContain("AUTH=PLAIN");
      expect(r.after_tls).toBe("OK");
      expect(r.select).toBe("OK");
    } finally {
      await own.stop();
    }
  });
});

describe("the same commands through Python's imaplib", () => {
  it("check, unsubscribe, getquota, uid MOVE, store -FLAGS / FLAGS, fetch INTERNALDATE / RFC822.TEXT / ALL", async () => {
    const r = await imaplib(
      `
import imaplib, json, os, time
m = imaplib.IMAP4("127.0.0.1", int(os.environ["PORT"]))
m.login("bob", os.environ["PW"])
out = {}
m.create("PyA")
m.create("PyB")
when = imaplib.Time2Internaldate(time.mktime(time.strptime("2021-07-04 12:00:00", "%Y-%m-%d %H:%M:%S")))
m.append("PyA", r"(\\Seen $Keep)", when, b"Subject: py\\r\\n\\r\\nbody text\\r\\n")
m.append("PyA", None, None, b"Subject: py2\\r\\n\\r\\nsecond\\r\\n")
m.select("PyA")
out["check"] = m.check()[0]
m.subscribe("PyB")
out["lsub_before"] = b" ".join(x for x in m.lsub()[1] if x).decode()
out["unsubscribe"] = m.unsubscribe("PyB")[0]
out["lsub_after"] = b" ".join(x for x in m.lsub()[1] if x).decode()
typ, data = m.getquota('""')
out["getquota"] = [typ, data[0].decode()]
out["fetch_internaldate"] = m.fetch("1", "(INTERNALDATE)")[1][0].decode()
out["internaldate_epoch"] = time.mktime(imaplib.Internaldate2tuple(m.fetch("1", "(INTERNALDATE)")[1][0]))
out["fetch_text"] = m.fetch("2", "(RFC822.TEXT)")[1][0][1].decode()
out["fetch_all"] = m.fetch("1", "ALL")[1][0].decode()
out["store_minus"] = m.store("1", "-FLAGS", "($Keep)")[1][0].decode()
out["store_replace"] = m.store("2", "FLAGS", r"(\\Flagged)")[1][0].decode()
uid = m.fetch("1", "(UID)")[1][0].decode().split("UID ")[1].rstrip(")")
typ, data = m.uid("MOVE", uid, "PyB")
out["uid_move"] = typ
out["after_move"] = m.select("PyA")[1][0].decode()
out["moved_to"] = m.status("PyB", "(MESSAGES)")[1][0].decode()
m.logout()
print(json.dumps(out))
`,
      { PORT: String(srv.port), PW: "bob-secret-2" },
    );
    expect(r.check).toBe("OK");
    expect(r.lsub_before).toMatch(/"PyB"/);
    expect(r.unsubscribe).toBe("OK");
    expect(r.lsub_after).not.toMatch(/PyB/);
    expect(r.getquota).toEqual(["OK", expect.stringMatching(/^"" \(STORAGE \d+ 51200\)$/)]);
    expect(r.fetch_internaldate).toMatch(/^1 \(INTERNALDATE "[ \d]\d-Jul-2021 \d\d:\d\d:\d\d [+-]\d{4}"\)$/);
    expect(r.internaldate_epoch).toBe(
      // the local 12:00 the script asked for, as an epoch (python and node share TZ)
      new Date(2021, 6, 4, 12, 0, 0).getTime() / 1000,
    );
    expect(r.fetch_text).toBe("second\r\n");
    expect(r.fetch_all).toMatch(
      /^1 \(FLAGS \(([^)]*)\) INTERNALDATE "[^"]+" RFC822\.SIZE \d+ ENVELOPE \(NIL "py" /,
    );
    expect(r.store_minus).toMatch(/^1 \(FLAGS \(\\Seen( \\Recent)?\)\)$/);
    // the \Seen that RFC822.TEXT set is replaced too
    expect(r.store_replace).toMatch(/^2 \(FLAGS \(\\Flagged( \\Recent)?\)\)$/);
    expect(r.uid_move).toBe("OK");
    expect(r.after_move).toBe("1");
    expect(r.moved_to).toMatch(/"?PyB"? \(MESSAGES 1\)/);
  });
});

describe("SELECT and EXAMINE responses (RFC 3501 §6.3.1, §6.3.2, §7.1, §7.3.1, §7.3.2)", () => {
  let root: string;
  let own: TestServer;
  /** What the first SELECT reported, for the restart to compare against. */
  let before: { uidValidity: number; uidNext: number; uids: number[] };
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), "imap-select-"));
    own = await startServer({ root });
  });
  afterAll(async () => {
    await own?.stop();
    await rm(root, { recursive: true, force: true });
  });

  /** The untagged lines and the tagged line of one reply. */
  function lines(out: string): { untagged: string[]; tagged: string } {
    const all = out.split("\r\n").filter(Boolean);
    return { untagged: all.filter((l) => l.startsWith("* ")), tagged: all.at(-1)! };
  }
  const code = (untagged: string[], name: string): string | undefined =>
    untagged
      .map((l) => new RegExp(`^\\* OK \\[${name} ([^\\]]*)\\]`).exec(l)?.[1])
      .find((v) => v !== undefined);
  const flagList = (text: string | undefined): string[] =>
    (/^\(([^)]*)\)$/.exec(text ?? "")?.[1] ?? "").split(" ").filter(Boolean).sort();
  const SYSTEM = ["\\Answered", "\\Deleted", "\\Draft", "\\Flagged", "\\Seen"];

  it("SELECT: FLAGS, PERMANENTFLAGS, EXISTS, RECENT, UNSEEN, UIDVALIDITY, UIDNEXT and [READ-WRITE]; EXAMINE: [READ-ONLY]", async () => {
    const t = await Transcript.connect(own.port);
    expect(await t.cmd("l", "LOGIN alice alice-secret-1")).toMatch(/l OK/);
    await t.cmd("c", "CREATE Selected");
    await append(t, "Selected", MSG.replace("macro test", "one"), "\\Seen");
    await append(t, "Selected", MSG.replace("macro test", "two"));
    await append(t, "Selected", MSG.replace("macro test", "three"), "\\Seen $Work");
    const sel = lines(await t.cmd("s", "SELECT Selected"));
    // §7.2.6: the flags defined in the mailbox, keywords in use included
    const flagsLine = sel.untagged.find((l) => l.startsWith("* FLAGS "));
    expect(flagList(flagsLine?.slice("* FLAGS ".length)).filter((f) => f !== "\\Recent")).toEqual([
      "$Work",
      ...SYSTEM,
    ]);
    // §7.1: PERMANENTFLAGS with \* — the client may create new keywords
    expect(flagList(code(sel.untagged, "PERMANENTFLAGS"))).toEqual(["$Work", ...SYSTEM, "\\*"].sort());
    expect(sel.untagged).toContain("* 3 EXISTS");
    // §2.3.2: the first session to see the messages gets them as \Recent
    expect(sel.untagged).toContain("* 3 RECENT");
    // §7.1: UNSEEN is the sequence number of the first unseen message
    expect(code(sel.untagged, "UNSEEN")).toBe("2");
    const uidValidity = Number(code(sel.untagged, "UIDVALIDITY"));
    expect(uidValidity).toBeGreaterThan(0);
    const uidNext = Number(code(sel.untagged, "UIDNEXT"));
    const uids = [...(await t.cmd("f", "FETCH 1:* (UID)")).matchAll(/UID (\d+)/g)].map((m) => Number(m[1]));
    expect(uids).toHaveLength(3);
    expect(uidNext).toBeGreaterThan(uids[2]!);
    expect(sel.tagged).toMatch(/^s OK \[READ-WRITE\]/);
    before = { uidValidity, uidNext, uids };

    // EXAMINE from another session: the same mailbox, read-only, no \Recent left for it
    const e = await Transcript.connect(own.port);
    expect(await e.cmd("l", "LOGIN alice alice-secret-1")).toMatch(/l OK/);
    const ex = lines(await e.cmd("e", "EXAMINE Selected"));
    expect(ex.untagged.find((l) => l.startsWith("* FLAGS "))).toBe(flagsLine);
    // §6.3.2: no flag can be changed permanently in a read-only mailbox
    expect(code(ex.untagged, "PERMANENTFLAGS")).toBe("()");
    expect(ex.untagged).toContain("* 3 EXISTS");
    expect(ex.untagged).toContain("* 0 RECENT");
    expect(code(ex.untagged, "UNSEEN")).toBe("2");
    expect(Number(code(ex.untagged, "UIDVALIDITY"))).toBe(uidValidity);
    expect(Number(code(ex.untagged, "UIDNEXT"))).toBe(uidNext);
    expect(ex.tagged).toMatch(/^e OK \[READ-ONLY\]/);
    e.close();

    // with every message seen there is no first unseen to report
    await t.cmd("st", "STORE 2 +FLAGS.SILENT (\\Seen)");
    const all = lines(await t.cmd("s2", "SELECT Selected"));
    expect(code(all.untagged, "UNSEEN")).toBeUndefined();
    expect(all.untagged).toContain("* 3 EXISTS");
    // \Recent went to the first SELECT of this session; a new SELECT does not get it again
    expect(all.untagged).toContain("* 0 RECENT");
    expect(all.tagged).toMatch(/^s2 OK \[READ-WRITE\]/);
    t.close();
  });

  it("Python's imaplib reads the same codes from SELECT and EXAMINE", async () => {
    expect(before).toBeDefined();
    const r = await imaplib(
      `
import imaplib, json, os
m = imaplib.IMAP4("127.0.0.1", int(os.environ["PORT"]))
m.login("alice", os.environ["PW"])
out = {}
def codes():
    return {k: [v.decode() if isinstance(v, bytes) else v for v in m.response(k)[1]] for k in
            ["FLAGS", "PERMANENTFLAGS", "UIDVALIDITY", "UIDNEXT", "UNSEEN", "EXISTS", "RECENT", "READ-WRITE", "READ-ONLY"]}
# imaplib files each untagged response, and the tagged reply's code, under its name until asked
out["select"] = m.select("Selected")
out["sel"] = codes()
out["examine"] = m.select("Selected", readonly=True)
out["ex"] = codes()
m.logout()
print(json.dumps(out, default=lambda b: b.decode()))
`,
      { PORT: String(own.port), PW: "alice-secret-1" },
    );
    expect(r.select).toEqual(["OK", ["3"]]);
    const sel = r.sel as Record<string, Array<string | null>>;
    expect(sel.UIDVALIDITY).toEqual([String(before.uidValidity)]);
    expect(sel.UIDNEXT).toEqual([String(before.uidNext)]);
    expect(sel.EXISTS).toEqual(["3"]);
    expect(sel.RECENT).toEqual(["0"]);
    expect(sel.UNSEEN).toEqual([null]); // every message is \Seen by now: no UNSEEN code
    expect(sel.FLAGS?.[0]).toMatch(/\\Seen/);
    expect(sel.PERMANENTFLAGS?.[0]).toMatch(/\\\*/);
    expect(sel["READ-WRITE"]).toEqual([""]);
    expect(sel["READ-ONLY"]).toEqual([null]);
    const ex = r.ex as Record<string, Array<string | null>>;
    expect(ex.UIDVALIDITY).toEqual([String(before.uidValidity)]);
    expect(ex.PERMANENTFLAGS).toEqual(["()"]);
    expect(ex["READ-ONLY"]).toEqual([""]);
    expect(ex["READ-WRITE"]).toEqual([null]);
  });

  it("UIDVALIDITY, UIDNEXT, UIDs and flags stay the same across a server restart on the same Maildir (§2.3.1.1)", async () => {
    expect(before).toBeDefined();
    await own.stop(); // drains and closes the store; the Maildir stays
    own = await startServer({ root });
    const t = await Transcript.connect(own.port);
    expect(await t.cmd("l", "LOGIN alice alice-secret-1")).toMatch(/l OK/);
    const sel = lines(await t.cmd("s", "SELECT Selected"));
    expect(Number(code(sel.untagged, "UIDVALIDITY"))).toBe(before.uidValidity);
    expect(Number(code(sel.untagged, "UIDNEXT"))).toBe(before.uidNext);
    expect(sel.untagged).toContain("* 3 EXISTS");
    const f = await t.cmd("f", "FETCH 1:* (UID FLAGS ENVELOPE)");
    expect([...f.matchAll(/UID (\d+)/g)].map((m) => Number(m[1]))).toEqual(before.uids);
    expect(f).toMatch(/\* 1 FETCH \(UID \d+ FLAGS \(\\Seen\) ENVELOPE \("[^"]*" "one"/);
    expect(f).toMatch(
      /\* 3 FETCH \(UID \d+ FLAGS \((\$Work \\Seen|\\Seen \$Work)\) ENVELOPE \("[^"]*" "three"/,
    );
    // the next message takes the UIDNEXT announced before the restart
    expect(await append(t, "Selected", MSG)).toMatch(
      new RegExp(`ap OK \\[APPENDUID ${before.uidValidity} ${before.uidNext}\\]`),
    );
    t.close();
  });
});

describe("UNSELECT (RFC 3691) against CLOSE (RFC 3501 §6.4.2)", () => {
  it("UNSELECT leaves a \\Deleted message in the mailbox; CLOSE expunges it, silently", async () => {
    const t = await login();
    await t.cmd("c", "CREATE Unselected");
    await append(t, "Unselected", MSG.replace("macro test", "keep me"));
    await append(t, "Unselected", MSG.replace("macro test", "second"));
    expect(await t.cmd("s", "SELECT Unselected")).toMatch(/\* 2 EXISTS/);
    expect(await t.cmd("d", "STORE 1 +FLAGS.SILENT (\\Deleted)")).toMatch(/d OK/);
    const un = await t.cmd("u", "UNSELECT");
    expect(un).toMatch(/^u OK/);
    expect(un).not.toMatch(/EXPUNGE/);
    expect(await t.cmd("x", "FETCH 1 FLAGS")).toMatch(/x BAD/); // back in the authenticated state
    // re-SELECT: the message is still there, still \Deleted
    expect(await t.cmd("s2", "SELECT Unselected")).toMatch(/\* 2 EXISTS/);
    const kept = await t.cmd("f", "FETCH 1 (FLAGS ENVELOPE)");
    expect(kept).toMatch(/FLAGS \([^)]*\\Deleted[^)]*\)/);
    expect(kept).toMatch(/"keep me"/);
    // CLOSE on the same state: the \Deleted message goes, with no untagged EXPUNGE (§6.4.2)
    const close = await t.cmd("cl", "CLOSE");
    expect(close).toMatch(/^cl OK/);
    expect(close).not.toMatch(/EXPUNGE/);
    expect(await t.cmd("s3", "SELECT Unselected")).toMatch(/\* 1 EXISTS/);
    expect(await t.cmd("f2", "FETCH 1 (ENVELOPE)")).toMatch(/"second"/);
    t.close();
  });
});

describe("FETCH BODY[section] sets \\Seen (RFC 3501 §6.4.5)", () => {
  const MULTI =
    'From: a@example.org\r\nSubject: parts\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b1"\r\n\r\n' +
    "preamble\r\n--b1\r\nContent-Type: text/plain\r\n\r\nfirst part\r\n--b1\r\nContent-Type: text/plain\r\n\r\nsecond part\r\n--b1--\r\n";
  const TEXT = MULTI.slice(MULTI.indexOf("\r\n\r\n") + 4);

  it("BODY.PEEK and EXAMINE leave it; BODY[1], BODY[TEXT] and BODY[HEADER.FIELDS] set it and report FLAGS", async () => {
    const t = await login();
    await t.cmd("c", "CREATE BodySeen");
    for (let i = 0; i < 3; i++) await append(t, "BodySeen", MULTI);
    await t.cmd("s", "SELECT BodySeen");
    const unseen = async (): Promise<void> => {
      const out = await t.cmd("fl", "FETCH 1:3 FLAGS");
      expect(out.match(/\* \d FETCH/g)).toHaveLength(3);
      expect(out).not.toMatch(/\\Seen/);
    };

    // BODY.PEEK: the data, no flag change and no FLAGS
    const peek = await t.cmd("p", "FETCH 1 (BODY.PEEK[1] BODY.PEEK[TEXT])");
    expect(peek).toContain("BODY[1] {10}\r\nfirst part");
    expect(peek).toContain(`BODY[TEXT] {${Buffer.byteLength(TEXT)}}\r\n${TEXT}`);
    expect(peek).not.toMatch(/FLAGS/);
    await unseen();

    // EXAMINE (read-only): BODY[...] without PEEK changes nothing either
    const ro = await login();
    expect(await ro.cmd("e", "EXAMINE BodySeen")).toMatch(/e OK \[READ-ONLY\]/);
    const roOut = await ro.cmd("b", "FETCH 1:3 (BODY[1] BODY[TEXT])");
    expect(roOut.match(/BODY\[1\] \{10\}\r\nfirst part/g)).toHaveLength(3);
    expect(roOut).not.toMatch(/FLAGS/);
    ro.close();
    await unseen();

    // read-write: each fetch of a section sets \Seen and says so in the same FETCH
    const one = await t.cmd("b1", "FETCH 1 (BODY[1])");
    expect(one).toMatch(/^\* 1 FETCH \(BODY\[1\] \{10\}\r\nfirst part FLAGS \(\\Seen \\Recent\)\)\r\nb1 OK/);
    const text = await t.cmd("b2", "FETCH 2 (BODY[TEXT])");
    expect(text).toContain(`BODY[TEXT] {${Buffer.byteLength(TEXT)}}\r\n${TEXT}`);
    expect(text).toMatch(/ FLAGS \(\\Seen \\Recent\)\)\r\nb2 OK/);
    // a header section answered from the cache is a BODY[section] too
    const hdr = await t.cmd("b3", "FETCH 3 (BODY[HEADER.FIELDS (SUBJECT)])");
    expect(hdr).toContain("BODY[HEADER.FIELDS (SUBJECT)] {18}\r\nSubject: parts\r\n\r\n");
    expect(hdr).toMatch(/ FLAGS \(\\Seen \\Recent\)\)\r\nb3 OK/);
    const after = await t.cmd("fl2", "FETCH 1:3 FLAGS");
    expect(after.match(/FLAGS \(\\Seen \\Recent\)/g)).toHaveLength(3);
    // another session sees the flag stored, not only this one
    const other = await login();
    await other.cmd("e", "EXAMINE BodySeen");
    expect((await other.cmd("f", "FETCH 1:3 FLAGS")).match(/FLAGS \(\\Seen\)/g)).toHaveLength(3);
    other.close();
    t.close();
  });
});
