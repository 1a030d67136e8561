import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { connectionLogger, createLogger, logServerError, newConnectionId } from "../../src/log/index.js";

function capture() {
  const lines: Array<Record<string, unknown>> = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString("utf8").split("\n")) if (l) lines.push(JSON.parse(l));
      cb();
    },
  });
  return { lines, destination };
}

describe("logger", () => {
  it("writes JSON lines with level names, ISO time and the base fields", () => {
    const { lines, destination } = capture();
    const log = createLogger({ level: "info", base: { service: "imap", host: "store1" }, destination });
    log.debug("hidden");
    log.info({ n: 1 }, "hello");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: "info", service: "imap", host: "store1", n: 1, msg: "hello" });
    expect(String(lines[0]?.time)).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  });

  it("redacts credentials at the top level and nested", () => {
    const { lines, destination } = capture();
    const log = createLogger({ destination });
    log.info(
      {
        password: "pw1",
        user: { name: "alice", password: "pw2", pass: "pw3" },
        req: { headers: { authorization: "Basic cHc0" } },
        secret: "pw5",
        auth: { credentials: "pw6" },
      },
      "login",
    );
    const text = JSON.stringify(lines);
    for (const s of ["pw1", "pw2", "pw3", "cHc0", "pw5", "pw6"]) expect(text).not.toContain(s);
    expect(lines[0]).toMatchObject({
      password: "[redacted]",
      user: { name: "alice", password: "[redacted]" },
    });
  });

  it("gives each connection a child with cid, proto and remote", () => {
    const { lines, destination } = capture();
    const log = createLogger({ destination });
    const conn = connectionLogger(log, { proto: "imap", remote: "192.0.2.1:50000" });
    conn.info({ password: "hunter2" }, "LOGIN");
    const other = connectionLogger(log, { cid: "fixed", proto: "pop3" });
    other.info("USER");
    expect(lines[0]).toMatchObject({ proto: "imap", remote: "192.0.2.1:50000", password: "[redacted]" });
    expect(String(lines[0]?.cid)).toMatch(/^[A-Za-z0-9_-]{8}$/);
    expect(lines[1]).toMatchObject({ cid: "fixed", proto: "pop3" });
    expect(newConnectionId()).not.toBe(newConnectionId());
  });
});

describe("logServerError (an SMTP/LMTP server's 'error' event)", () => {
  it("a client that went away is debug, any other error is an error", () => {
    const { lines, destination } = capture();
    const log = createLogger({ level: "debug", destination });
    const reset = Object.assign(new Error("read ECONNRESET"), {
      code: "ECONNRESET",
      remoteAddress: "127.0.0.1",
    });
    logServerError(log, reset, "smtp server error");
    logServerError(log, Object.assign(new Error("write EPIPE"), { code: "EPIPE" }), "smtp server error");
    logServerError(
      log,
      Object.assign(new Error("listen EADDRINUSE"), { code: "EADDRINUSE" }),
      "smtp server error",
    );
    logServerError(log, new Error("no code"), "lmtp server error");
    expect(lines.map((l) => [l.level, l.msg])).toEqual([
      ["debug", "smtp server error: client connection lost"],
      ["debug", "smtp server error: client connection lost"],
      ["error", "smtp server error"],
      ["error", "lmtp server error"],
    ]);
  });
});
