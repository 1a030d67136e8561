/**
 * Credentials never reach a log, even at trace level: the production logger
 * (src/log, with its redaction paths) catches everything the IMAP server
 * writes while clients log in every way there is — and fail.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../src/log/index.js";
import { lineSink } from "../support/log-sink.js";
import { startServer, type TestServer, Transcript, USERS } from "./support.js";

const lines: string[] = [];
let srv: TestServer;
beforeAll(async () => {
  const sink = lineSink(lines);
  srv = await startServer({ logger: createLogger({ level: "trace", destination: sink }) });
});
afterAll(async () => {
  await srv?.stop();
});

const b64 = (s: string) => Buffer.from(s).toString("base64");

describe("IMAP logs at trace level", () => {
  it("hold no password, plain or base64, from LOGIN and AUTHENTICATE PLAIN, right or wrong", async () => {
    const password = USERS.alice?.password as string;
    const wrong = "Wr0ng-Guess-xyz";
    const t = await Transcript.connect(srv.port);
    expect(await t.cmd("a", `LOGIN alice ${wrong}`)).toMatch(/a NO/);
    expect(await t.cmd("b", `LOGIN "alice" "${wrong}2"`)).toMatch(/b NO/);
    t.send(`c LOGIN alice {${password.length}}\r\n`);
    await t.until(/\+ [^\r]*\r\n/);
    t.send(`${password}\r\n`);
    expect(await t.until(/c (OK|NO|BAD)[^\r]*\r\n/)).toMatch(/c OK/);
    t.close();
    const u = await Transcript.connect(srv.port);
    expect(await u.cmd("d", `AUTHENTICATE PLAIN ${b64(`\0alice\0${wrong}3`)}`)).toMatch(/d NO/);
    expect(await u.cmd("e", `AUTHENTICATE PLAIN ${b64(`\0alice\0${password}`)}`)).toMatch(/e OK/);
    u.close();
    const v = await Transcript.connect(srv.port);
    v.send("f AUTHENTICATE PLAIN\r\n");
    await v.until(/\+[^\r]*\r\n/);
    v.send(`${b64(`alice\0alice\0${password}`)}\r\n`);
    expect(await v.until(/f (OK|NO|BAD)[^\r]*\r\n/)).toMatch(/f OK/);
    await v.cmd("g", "LOGOUT");
    await new Promise((r) => setTimeout(r, 100));
    const text = lines.join("\n");
    // the log really is at trace level and saw these sessions
    expect(text).toContain('"level":"debug"');
    expect(text).toMatch(/authentication failed/);
    expect(lines.filter((l) => l.includes('"logged in"')).length).toBeGreaterThanOrEqual(3);
    for (const secret of [password, wrong, b64(`\0alice\0${password}`), b64(`alice\0alice\0${password}`)]) {
      expect(text).not.toContain(secret);
    }
    expect(text).not.toContain(b64(`\0alice\0${wrong}3`));
  });
});
