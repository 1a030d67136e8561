/**
 * Credentials never reach a log, even at trace level: the production logger
 * (src/log, with its redaction paths) behind the POP3 server, with slapd,
 * while clients log in with USER/PASS and AUTH PLAIN — and fail, and while
 * the directory is down.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../src/log/index.js";
import { lineSink } from "../support/log-sink.js";
import { Conversation, harness, type Pop3Harness } from "./harness.js";

const lines: string[] = [];
let h: Pop3Harness;
let port: number;
beforeAll(async () => {
  h = await harness();
  const sink = lineSink(lines);
  ({ port } = await h.start({ tls: false, logger: createLogger({ level: "trace", destination: sink }) }));
});
afterAll(async () => {
  await h?.stop();
});

const b64 = (s: string) => Buffer.from(s).toString("base64");

describe("POP3 logs at trace level", () => {
  it("hold no password, plain or base64, right or wrong, directory up or down", async () => {
    const password = "bob-secret-2";
    const wrong = "Wr0ng-Guess-pop";
    const c = new Conversation(port);
    await c.line();
    await c.cmd("USER bob");
    expect(await c.cmd(`PASS ${wrong}`)).toMatch(/^-ERR \[AUTH\]/);
    expect(await c.cmd(`AUTH PLAIN ${b64(`\0bob\0${wrong}2`)}`)).toMatch(/^-ERR/);
    c.send("AUTH PLAIN");
    expect(await c.line()).toMatch(/^\+/);
    expect(await c.cmd(b64(`\0bob\0${password}`))).toMatch(/^\+OK/);
    expect(await c.cmd("QUIT")).toMatch(/^\+OK/);
    await h.ldap.halt();
    try {
      const d = new Conversation(port);
      await d.line();
      await d.cmd("USER bob");
      expect(await d.cmd(`PASS ${password}`)).toMatch(/^-ERR \[SYS\/TEMP\]/);
      d.close();
    } finally {
      await h.ldap.resume();
    }
    const e = new Conversation(port);
    await e.line();
    await e.cmd("USER bob");
    expect(await e.cmd(`PASS ${password}`)).toMatch(/^\+OK/);
    await e.cmd("QUIT");
    await new Promise((r) => setTimeout(r, 100));
    const text = lines.join("\n");
    expect(text).toContain('"level":"debug"');
    expect(text).toMatch(/authentication failed/);
    expect(text).toMatch(/directory unavailable/);
    for (const secret of [password, wrong, `${wrong}2`, b64(`\0bob\0${password}`), b64(`\0bob\0${wrong}2`)]) {
      expect(text).not.toContain(secret);
    }
  });
});
