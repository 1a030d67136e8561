/**
 * SEARCH keys the other tests leave out (RFC 3501 §6.4.4): the internal-date
 * keys BEFORE / ON / SINCE with cases that match (and their boundaries), the
 * CC and BCC header keys, and every flag key with its UN- form, all against
 * messages APPENDed with known internal dates and flags. Run both as protocol
 * transcripts and through Python's imaplib.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startServer, type TestServer, Transcript } from "./support.js";

let srv: TestServer;
let t: Transcript;

const message = (subject: string, extra: string): string =>
  `From: sender@example.org\r\nTo: bob@example.org\r\n${extra}Subject: ${subject}\r\nDate: Mon, 6 Mar 2023 10:00:00 +0000\r\n\r\nbody of ${subject}\r\n`;

/** Noon UTC, so the server's local day is the same in any zone within ±11 h. */
const MESSAGES: Array<{ flags: string; date: string | undefined; text: string }> = [
  {
    flags: "\\Seen \\Flagged",
    date: "01-Feb-2020 12:00:00 +0000",
    text: message("one", "Cc: Carol Cc <carol@example.org>\r\n"),
  },
  {
    flags: "\\Draft $Work",
    date: "15-Mar-2021 12:00:00 +0000",
    text: message("two", "Bcc: dave@hidden.example\r\n"),
  },
  {
    flags: "\\Deleted \\Answered",
    date: "10-Jan-2022 12:00:00 +0000",
    text: message("three", "Cc: =?UTF-8?Q?Zo=C3=AB?= <zoe@example.org>, carl@example.net\r\n"),
  },
  // no date: the internal date is the time of the APPEND
  { flags: "", date: undefined, text: message("four", "") },
];

beforeAll(async () => {
  srv = await startServer();
  t = await Transcript.connect(srv.port);
  expect(await t.cmd("l", "LOGIN bob bob-secret-2")).toMatch(/l OK/);
  expect(await t.cmd("c", "CREATE Dates")).toMatch(/c OK/);
  // one message appended and expunged first, so UIDs and sequence numbers differ
  t.send("a0 APPEND Dates (\\Deleted) {9+}\r\nSubject: \r\n");
  expect(await t.until(/a0 OK.*\r\n/)).toMatch(/APPENDUID \d+ 1\]/);
  await t.cmd("s0", "SELECT Dates");
  expect(await t.cmd("x0", "EXPUNGE")).toMatch(/\* 1 EXPUNGE/);
  for (const m of MESSAGES) {
    const b = Buffer.from(m.text);
    t.send(`ap APPEND Dates (${m.flags}) ${m.date ? `"${m.date}" ` : ""}{${b.length}+}\r\n`);
    t.send(b);
    t.send("\r\n");
    expect(await t.until(/ap (OK|NO|BAD).*\r\n/)).toMatch(/ap OK \[APPENDUID/);
  }
  expect(await t.cmd("s", "SELECT Dates")).toMatch(/\* 4 EXISTS/);
});

afterAll(async () => {
  t?.close();
  await srv?.stop();
});

async function search(criteria: string, uid = false): Promise<string> {
  const out = await t.cmd("q", `${uid ? "UID " : ""}SEARCH ${criteria}`);
  expect(out).toMatch(/q OK/);
  return /\* SEARCH([\d ]*)\r\n/.exec(out)?.[1]?.trim() ?? out;
}

describe("SEARCH by internal date (RFC 3501 §6.4.4 BEFORE, ON, SINCE)", () => {
  const today = new Date();
  const fmt = (d: Date) =>
    `${d.getDate()}-${["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"][d.getMonth()]}-${d.getFullYear()}`;

  it.each([
    ["BEFORE 15-Mar-2021", "1"],
    ["ON 15-Mar-2021", "2"],
    ["SINCE 15-Mar-2021", "2 3 4"], // SINCE is "on or after"
    ["BEFORE 1-Feb-2020", ""], // BEFORE is strictly earlier
    ['ON "1-Feb-2020"', "1"], // quoted date
    ["ON 2-Feb-2020", ""],
    ["SINCE 11-Jan-2022", "4"],
    ["SINCE 1-Feb-2020 BEFORE 1-Jan-2022", "1 2"],
    ["NOT BEFORE 10-Jan-2022", "3 4"],
    ["OR ON 1-Feb-2020 ON 10-jan-2022", "1 3"], // month names are case-insensitive
    [`ON ${fmt(today)}`, "4"], // APPEND without a date: now
    ["SINCE 1-Jan-2999", ""],
  ])("%s → %s", async (criteria, expected) => {
    expect(await search(criteria)).toBe(expected);
  });

  it("UID SEARCH answers with UIDs for a date range", async () => {
    const fetched = await t.cmd("u2", "FETCH 2:3 (UID)");
    const list = [...fetched.matchAll(/UID (\d+)/g)].map((m) => m[1]).join(" ");
    expect(list).toBe("3 4");
    expect(await search("SINCE 15-Mar-2021 BEFORE 11-Jan-2022", true)).toBe(list);
  });

  it("INTERNALDATE keeps the APPEND's date-time (the instant, in the server's zone)", async () => {
    const out = await t.cmd("f", "FETCH 1:3 (INTERNALDATE)");
    const dates = [...out.matchAll(/INTERNALDATE "([^"]+)"/g)].map((m) => m[1]!);
    expect(dates).toHaveLength(3);
    const instant = (s: string) => {
      const m = /^\s?(\d{1,2})-(\w{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)$/.exec(s);
      expect(m).not.toBeNull();
      const [, d, mon, y, hh, mm, ss, sign, oh, om] = m!;
      const month = "JanFebMarAprMayJunJulAugSepOctNovDec".indexOf(mon!) / 3;
      const offset = (sign === "-" ? -1 : 1) * (Number(oh) * 60 + Number(om));
      return Date.UTC(Number(y), month, Number(d), Number(hh), Number(mm) - offset, Number(ss));
    };
    expect(dates.map(instant)).toEqual([
      Date.UTC(2020, 1, 1, 12),
      Date.UTC(2021, 2, 15, 12),
      Date.UTC(2022, 0, 10, 12),
    ]);
  });
});

describe("SEARCH by CC and BCC (RFC 3501 §6.4.4)", () => {
  it.each([
    ["CC carol", "1"],
    ["CC example.net", "3"], // second address in the field
    ["CC dave", ""], // dave is only in Bcc
    ["BCC dave", "2"],
    ["BCC hidden.example", "2"],
    ["BCC carol", ""],
    ["CC CAROL", "1"], // case-insensitive
  ])("%s → %s", async (criteria, expected) => {
    expect(await search(criteria)).toBe(expected);
  });

  it("matches a CC display name given as an RFC 2047 encoded word, with CHARSET UTF-8", async () => {
    const word = Buffer.from("zoë");
    t.send(`q SEARCH CHARSET UTF-8 CC {${word.length}+}\r\n`);
    t.send(word);
    t.send("\r\n");
    expect(await t.until(/q OK.*\r\n/)).toMatch(/\* SEARCH 3\r\n/);
  });
});

describe("SEARCH by flags (RFC 3501 §6.4.4)", () => {
  it.each([
    ["SEEN", "1"],
    ["UNSEEN", "2 3 4"],
    ["FLAGGED", "1"],
    ["UNFLAGGED", "2 3 4"],
    ["DRAFT", "2"],
    ["UNDRAFT", "1 3 4"],
    ["DELETED", "3"],
    ["UNDELETED", "1 2 4"],
    ["KEYWORD $Work", "2"],
    ["KEYWORD $work", "2"], // keywords compare case-insensitively
    ["UNKEYWORD $Work", "1 3 4"],
    ["KEYWORD $Nothing", ""],
    ["UNKEYWORD $Nothing", "1 2 3 4"],
    ["OR DELETED DRAFT", "2 3"],
    ["UNDELETED UNSEEN", "2 4"],
    ["ANSWERED DELETED", "3"],
  ])("%s → %s", async (criteria, expected) => {
    expect(await search(criteria)).toBe(expected);
  });

  it("follows STORE: a flag set or cleared changes what the keys find", async () => {
    await t.cmd("st1", "STORE 4 +FLAGS.SILENT (\\Seen \\Flagged)");
    await t.cmd("st2", "STORE 1 -FLAGS.SILENT (\\Flagged)");
    expect(await search("SEEN")).toBe("1 4");
    expect(await search("FLAGGED")).toBe("4");
    expect(await search("UNFLAGGED")).toBe("1 2 3");
    await t.cmd("st3", "STORE 4 -FLAGS.SILENT (\\Seen \\Flagged)");
    await t.cmd("st4", "STORE 1 +FLAGS.SILENT (\\Flagged)");
    expect(await search("SEEN")).toBe("1");
  });
});

describe("the same keys through Python's imaplib", () => {
  it("imaplib's search() with dates, CC/BCC and flags", async () => {
    const script = `
import imaplib, json, os
m = imaplib.IMAP4("127.0.0.1", int(os.environ["PORT"]))
m.login("bob", os.environ["PW"])
m.select("Dates", readonly=True)
out = {}
for q in ["(BEFORE 15-Mar-2021)", "(SINCE 15-Mar-2021)", "(ON 10-Jan-2022)", "(CC carol)", "(BCC dave)",
          "(DELETED)", "(UNDELETED)", "(DRAFT)", "(UNDRAFT)", "(SEEN)", "(UNSEEN)", "(UNKEYWORD $Work)"]:
    typ, data = m.search(None, q)
    out[q] = [typ, data[0].decode()]
m.logout()
print(json.dumps(out))
`;
    const child = spawn("python3", ["-"], {
      env: { ...process.env, PORT: String(srv.port), PW: "bob-secret-2" },
      stdio: ["pipe", "pipe", "pipe"],
    });
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
    expect(stderr).toBe("");
    expect(code).toBe(0);
    expect(JSON.parse(stdout)).toEqual({
      "(BEFORE 15-Mar-2021)": ["OK", "1"],
      "(SINCE 15-Mar-2021)": ["OK", "2 3 4"],
      "(ON 10-Jan-2022)": ["OK", "3"],
      "(CC carol)": ["OK", "1"],
      "(BCC dave)": ["OK", "2"],
      "(DELETED)": ["OK", "3"],
      "(UNDELETED)": ["OK", "1 2 4"],
      "(DRAFT)": ["OK", "2"],
      "(UNDRAFT)": ["OK", "1 3 4"],
      "(SEEN)": ["OK", "1"],
      "(UNSEEN)": ["OK", "2 3 4"],
      "(UNKEYWORD $Work)": ["OK", "1 3 4"],
    });
  });
});
