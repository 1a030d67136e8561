/**
 * `mailinfra queue flush` end to end: the MX runs in its own process; a
 * message for a store that is down is deferred with a long backoff
 * (queue.retryInitialSeconds = 300); the store comes back; the real CLI
 * (runtime/src/cli/main.ts, `queue flush --config`) leaves its request and
 * the running service delivers the message at its next scan — seconds, not
 * the five minutes of the backoff.
 */
import { execFile } from "node:child_process";
import { mkdtemp } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { QueueStore } from "../../src/queue/store.js";
import { freePort, python, type Sink, startSink, startWorld, type World } from "../smtp/harness.js";
import { type ServeChild, serveChild, writeConfig } from "./serve-child.js";

const run = promisify(execFile);
const MAIN = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));
const BACKOFF_SECONDS = 300;

let world: World;
let served: ServeChild | undefined;
let sink: Sink | undefined;

beforeAll(async () => {
  world = await startWorld();
});

afterAll(async () => {
  await served?.stop();
  await sink?.close();
  await world?.stop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("mailinfra queue flush", () => {
  it("makes the running service deliver a deferred message at once, well before its backoff", async () => {
    const queueDir = await mkdtemp(join(world.dir, "queue-flush-"));
    const lmtpPort = await freePort(); // the store is down: nothing listens
    const config = await writeConfig(world, queueDir, lmtpPort, {
      retryInitialSeconds: BACKOFF_SECONDS,
      retryMaxSeconds: 3600,
      scanIntervalSeconds: 0.5,
    });
    served = await serveChild(config);
    const reply = await python(
      `
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]))
s.ehlo("flush.client.test")
s.mail("sender@remote.test")
s.rcpt("alice@example.org")
code, msg = s.data(b"Subject: flush-me\\r\\n\\r\\nafter the outage\\r\\n")
print(code, msg.decode())
s.quit()
`,
      [String(served.mx)],
    );
    const id = reply.match(/^250 2\.0\.0 Ok: queued as (\S+)/)?.[1] ?? "";
    expect(id, reply).not.toBe("");

    // the first attempt fails (connection refused) and schedules the next one 300 s ahead
    const store = new QueueStore(queueDir);
    const deadline = Date.now() + 15_000;
    let env = await store.load(id);
    while (!env || env.attempts < 1) {
      if (Date.now() > deadline) throw new Error("no deferred attempt recorded");
      await sleep(50);
      env = await store.load(id);
    }
    expect(env.recipients[0]?.status).toBe("pending");
    expect(env.recipients[0]?.lastReply).toMatch(/^4\.4\.1 /);
    expect(env.nextAttemptAt - Date.now()).toBeGreaterThan((BACKOFF_SECONDS - 30) * 1000);

    // the store is back; a few scans go by and the message stays put (its backoff holds)
    sink = await startSink({ lmtp: true, port: lmtpPort });
    await sleep(1500);
    expect(sink.messages).toEqual([]);

    const flushed = await run(process.execPath, [
      "--import",
      "tsx",
      MAIN,
      "queue",
      "flush",
      "--config",
      config,
    ]);
    expect(flushed.stdout).toContain("flush requested");
    const asked = Date.now();
    const [got] = await sink.waitFor(1, 10_000);
    expect(Date.now() - asked).toBeLessThan(10_000);
    expect(got?.to).toEqual(["alice@example.org"]);
    expect(got?.data.toString()).toContain("Subject: flush-me\r\n");
    // and it leaves the queue
    const gone = Date.now() + 10_000;
    while (await store.exists(id)) {
      if (Date.now() > gone) throw new Error(`${id} still queued after delivery`);
      await sleep(50);
    }
  });
});
