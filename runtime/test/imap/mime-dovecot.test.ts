/**
 * FETCH of real MIME compared with Debian's Dovecot: the same fixtures are
 * appended to both servers and every item is fetched one at a time; the
 * answers must match (type names compared case-insensitively: RFC 3501
 * leaves their case to the server).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Dovecot, startDovecot } from "../support/dovecot.js";
import { fixture, startServer, type TestServer, Transcript } from "./support.js";

const FIXTURES = ["nested.eml", "koi8.eml", "plain.eml"];
const ITEMS = [
  "BODYSTRUCTURE",
  "BODY",
  "ENVELOPE",
  "RFC822.SIZE",
  "BODY.PEEK[]",
  "BODY.PEEK[HEADER]",
  "BODY.PEEK[TEXT]",
  "BODY.PEEK[1]",
  "BODY.PEEK[1.1]",
  "BODY.PEEK[1.2]",
  "BODY.PEEK[1.MIME]",
  "BODY.PEEK[1.2.MIME]",
  "BODY.PEEK[2]",
  "BODY.PEEK[2.HEADER]",
  "BODY.PEEK[2.TEXT]",
  "BODY.PEEK[2.MIME]",
  "BODY.PEEK[2.1]",
  "BODY.PEEK[2.2]",
  "BODY.PEEK[2.2.MIME]",
  "BODY.PEEK[2.HEADER.FIELDS (SUBJECT FROM)]",
  "BODY.PEEK[3]",
  "BODY.PEEK[3.MIME]",
  "BODY.PEEK[4]",
  "BODY.PEEK[HEADER.FIELDS (From Subject X-Missing)]",
  "BODY.PEEK[HEADER.FIELDS.NOT (From To Received)]",
  "BODY.PEEK[]<0.10>",
  "BODY.PEEK[TEXT]<100.50>",
  "BODY.PEEK[1.1]<5000.10>",
  "RFC822.HEADER",
];

let dovecot: Dovecot;
let ours: TestServer;
const answers = new Map<string, string>();

async function collect(port: number, label: string): Promise<void> {
  const t = await Transcript.connect(port);
  await t.cmd("a", "LOGIN alice alice-secret-1");
  for (const f of FIXTURES) {
    const m = await fixture(f);
    t.send(`b APPEND INBOX {${m.length}+}\r\n`);
    t.send(m);
    t.send("\r\n");
    await t.until(/b OK.*\r\n/);
  }
  await t.cmd("c", "EXAMINE INBOX");
  for (const item of ITEMS) {
    const out = await t.cmd("d", `FETCH 1:* (${item})`);
    answers.set(`${label} ${item}`, out.replace(/\r\nd OK.*\r\n$/, ""));
  }
  t.close();
}

beforeAll(async () => {
  [dovecot, ours] = await Promise.all([
    startDovecot({ password: "alice-secret-1", fsync: "never" }),
    startServer(),
  ]);
  await Promise.all([collect(dovecot.port, "dovecot"), collect(ours.port, "ours")]);
});

afterAll(async () => {
  await Promise.all([dovecot?.stop(), ours?.stop()]);
});

describe("FETCH matches Dovecot on nested multipart, message/rfc822 and 8-bit mail", () => {
  it.each(ITEMS)("%s", (item) => {
    const theirs = answers.get(`dovecot ${item}`)!;
    const mine = answers.get(`ours ${item}`)!;
    expect(theirs).toMatch(/FETCH/);
    expect(mine.toLowerCase()).toBe(theirs.toLowerCase());
  });
});
