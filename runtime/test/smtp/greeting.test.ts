/**
 * The pause before the greeting (smtp/greeting.ts, Postfix postscreen's
 * pregreet test): a client that talks before the 220 is refused by OUR
 * pipeline — 554 5.5.1, the `early-talker` check recorded as "fail" and the
 * verdict logged — never by smtp-server's own "421 You talk too soon". A
 * polite client waits the pause once, then is greeted at once (pass cached);
 * exempt networks, the relay's trusted networks and submission never wait.
 */
import { mkdtemp } from "node:fs/promises";
import { connect } from "node:net";
import { join } from "node:path";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jsonSink } from "../support/log-sink.js";
import { makeConfig, type Running, startService, startWorld, swaks, type World } from "./harness.js";

const PAUSE_MS = 600;

let world: World;
let smtp: Running;
const logs: Array<Record<string, unknown>> = [];

beforeAll(async () => {
  world = await startWorld();
  const queueDir = await mkdtemp(join(world.dir, "queue-"));
  const sink = jsonSink(logs);
  smtp = await startService(
    world,
    makeConfig({
      queueDir,
      lmtpPort: world.lmtp.port,
      // 127.0.0.2 is the relay's trusted network; 127.0.0.1 is a stranger to every listener here.
      smtp: { greeting: { pauseMs: PAUSE_MS, exemptNetworks: [] } },
    }),
    {},
    pino({ level: "info" }, sink),
  );
});

afterAll(async () => {
  await smtp?.service.drain(1000);
  await world?.stop();
});

/** Milliseconds until the final "220 " line, and everything read until then. */
function timeToGreeting(port: number, localAddress = "127.0.0.1"): Promise<{ ms: number; text: string }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const socket = connect({ port, host: "127.0.0.1", localAddress });
    let text = "";
    socket.on("data", (d: Buffer) => {
      text += d.toString("latin1");
      if (/^220 /m.test(text)) {
        socket.end("QUIT\r\n");
        resolve({ ms: performance.now() - started, text });
      }
    });
    socket.on("error", reject);
    setTimeout(() => reject(new Error(`no greeting: ${JSON.stringify(text)}`)), 10_000).unref();
  });
}

/** Writes `text` as soon as the connection is up (before any greeting) and reads until the server closes. */
function talk(port: number, text: string, localAddress = "127.0.0.1"): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: "127.0.0.1", localAddress }, () => socket.write(text));
    let out = "";
    socket.on("data", (d: Buffer) => {
      out += d.toString("latin1");
    });
    socket.on("close", () => resolve(out));
    socket.on("error", reject);
    setTimeout(() => reject(new Error(`server never closed: ${JSON.stringify(out)}`)), 10_000).unref();
  });
}

type Check = { check: string; stage: string; outcome: string; detail?: string };
const checksOf = (entry: Record<string, unknown> | undefined): Check[] =>
  ((entry?.verdict as { checks?: Check[] } | undefined)?.checks ?? []) as Check[];

describe("talking before the greeting", () => {
  it("is refused by the pipeline with 554 5.5.1, recorded as the early-talker check and logged", async () => {
    const before = world.lmtp.messages.length;
    const out = await talk(
      smtp.mx,
      "EHLO early.test\r\nMAIL FROM:<x@remote.test>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n",
    );
    // The partial banner (postscreen_greet_banner), then our refusal; never smtp-server's 421.
    expect(out).toMatch(/^220-mx\.example\.org ESMTP\r\n/);
    expect(out).toMatch(/^554 5\.5\.1 Protocol error: talked before the greeting/m);
    expect(out).not.toMatch(/^421 /m);
    expect(out).not.toMatch(/^(250|354)/m);
    const entry = logs.find((l) => l.msg === "filter verdict" && l.stage === "connect");
    expect(entry).toMatchObject({
      level: 30,
      listener: "mx",
      client: "127.0.0.1",
      reply: expect.stringMatching(/^554 5\.5\.1/),
    });
    expect(entry?.verdict).toMatchObject({ stage: "connect", action: "reject", decidedBy: "early-talker" });
    const early = checksOf(entry).find((c) => c.check === "early-talker");
    expect(early).toMatchObject({ stage: "connect", outcome: "fail" });
    expect(early?.detail).toMatch(/^sent \d+ bytes before the greeting$/);
    expect(world.lmtp.messages.length).toBe(before);
  });

  it("a polite client waits the pause once, is recorded as passing, then is greeted at once", async () => {
    // A fresh server knows nobody; this one already refused 127.0.0.1 above, which is not a pass.
    const first = await timeToGreeting(smtp.mx);
    expect(first.text).toMatch(/^220-mx\.example\.org ESMTP\r\n220 mx\.example\.org ESMTP/);
    expect(first.ms).toBeGreaterThanOrEqual(PAUSE_MS - 20);
    const second = await timeToGreeting(smtp.mx);
    expect(second.text).toMatch(/^220 /);
    expect(second.ms).toBeLessThan(PAUSE_MS);

    const r = await swaks([
      "--server",
      "127.0.0.1",
      "--port",
      String(smtp.mx),
      "--helo",
      "client.example.com",
      "--from",
      "s@remote.test",
      "--to",
      "alice@example.org",
      "--header",
      "Subject: polite",
    ]);
    expect(r.output).toMatch(/250 2\.0\.0 Ok: queued as/);
    const queued = logs.filter((l) => l.msg === "queued").at(-1);
    expect(checksOf(queued).find((c) => c.check === "early-talker")).toMatchObject({
      outcome: "skip",
      detail: expect.stringMatching(/passed recently/),
    });
  });

  it("never pauses submission or the relay's trusted network", async () => {
    const submission = await timeToGreeting(smtp.submission);
    expect(submission.text).toMatch(/^220 /);
    expect(submission.ms).toBeLessThan(PAUSE_MS);
    const trusted = await timeToGreeting(smtp.relay, "127.0.0.2");
    expect(trusted.text).toMatch(/^220 /);
    expect(trusted.ms).toBeLessThan(PAUSE_MS);
  });

  it("a client that hangs up during the pause is logged, and never reaches the pipeline", async () => {
    // 127.0.0.3 has not passed yet: it gets the pause.
    const socket = connect({ port: smtp.mx, host: "127.0.0.1", localAddress: "127.0.0.3" });
    await new Promise((r) => socket.once("data", r)); // the 220- line
    socket.destroy();
    await new Promise((r) => setTimeout(r, 150));
    const from3 = logs.filter((l) => l.client === "127.0.0.3");
    expect(from3.map((l) => l.msg)).toEqual(["client left before the greeting"]);
    expect(from3[0]).toMatchObject({ listener: "mx", earlyBytes: 0 });
  });

  it("a drain closes sockets still waiting for their greeting at once", async () => {
    const queueDir = await mkdtemp(join(world.dir, "queue-drain-"));
    const other = await startService(
      world,
      makeConfig({
        queueDir,
        lmtpPort: world.lmtp.port,
        smtp: { greeting: { pauseMs: 30_000, exemptNetworks: [] } },
      }),
    );
    const socket = connect({ port: other.mx, host: "127.0.0.1" });
    await new Promise((r) => socket.once("data", r));
    const closed = new Promise((r) => socket.once("close", r));
    socket.on("error", () => undefined);
    const started = performance.now();
    await other.service.drain(5000);
    await closed;
    expect(performance.now() - started).toBeLessThan(5000);
  });

  it("a trusted client that writes before the greeting is served in order, not refused", async () => {
    const out = await talk(smtp.relay, "EHLO fast.test\r\nQUIT\r\n", "127.0.0.2");
    expect(out).toMatch(/^220 mx\.example\.org ESMTP[^\r]*\r\n250-mx\.example\.org/);
    expect(out).toMatch(/^221 /m);
  });
});
