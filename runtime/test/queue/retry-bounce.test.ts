/**
 * Delivery behaviour of the queue against an LMTP store: per-recipient LMTP
 * replies (RFC 2033 §4.2), retry with backoff on 4xx, DSNs (RFC 3464) on
 * permanent failure and on expiry, none for the null sender or NOTIFY=NEVER,
 * success DSNs on request, RET=HDRS, and the per-destination concurrency
 * limit. Backoff is shortened by config (retryInitialSeconds 0.2).
 */
import { mkdtemp, readdir } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { QueueStore } from "../../src/queue/store.js";
import {
  makeConfig,
  python,
  type Running,
  startService,
  startSink,
  startWorld,
  type World,
} from "../smtp/harness.js";

let world: World;
let smtp: Running;
let expiring: Running;
let queueDir: string;

beforeAll(async () => {
  world = await startWorld();
  queueDir = await mkdtemp(join(world.dir, "queue-"));
  smtp = await startService(world, makeConfig({ queueDir, lmtpPort: world.lmtp.port }));
  const expDir = await mkdtemp(join(world.dir, "queue-exp-"));
  expiring = await startService(
    world,
    makeConfig({ queueDir: expDir, lmtpPort: world.lmtp.port, queue: { maxAgeSeconds: 1 } }),
  );
});

afterAll(async () => {
  await smtp?.service.drain(1000);
  await expiring?.service.drain(1000);
  await world?.stop();
});

/** python3 smtplib; returns the queue id from the 250 reply. */
async function send(
  port: number,
  from: string,
  to: string[],
  body: string,
  opts: { mail?: string[]; rcpt?: string[] } = {},
): Promise<string> {
  const out = await python(
    `
import smtplib, sys, json
a = json.loads(sys.argv[2])
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]))
s.ehlo("client.test")
code, msg = s.mail(a["from"], a["mail"])
assert code == 250, msg
for r in a["to"]:
    code, msg = s.rcpt(r, a["rcpt"])
    assert code == 250, msg
code, msg = s.data(a["body"].encode())
print(code, msg.decode())
s.quit()
`,
    [String(port), JSON.stringify({ from, to, body, mail: opts.mail ?? [], rcpt: opts.rcpt ?? [] })],
  );
  const id = out.match(/^250 2\.0\.0 Ok: queued as (\S+)/)?.[1];
  if (!id) throw new Error(`not queued: ${out}`);
  return id;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitGone(dir: string, id: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while ((await readdir(join(dir, "msg"))).includes(id)) {
    if (Date.now() > deadline) throw new Error(`${id} still queued`);
    await sleep(50);
  }
}

const copiesTo = (rcpt: string, marker: string) =>
  world.lmtp.messages.filter((m) => m.to.includes(rcpt) && m.data.toString().includes(marker)).length;

describe("retry", () => {
  it("retries a 4xx recipient with backoff, without delivering the others again", async () => {
    world.lmtp.replies.set("bob@example.org", { code: 452, text: "4.2.2 mailbox full" });
    const id = await send(
      smtp.mx,
      "s@remote.test",
      ["alice@example.org", "bob@example.org"],
      "Subject: retry-1\r\n\r\nx\r\n",
    );
    const store = new QueueStore(queueDir);
    // wait for several attempts
    const deadline = Date.now() + 10_000;
    for (;;) {
      const env = await store.load(id);
      if ((env?.attempts ?? 0) >= 3) {
        expect(env?.recipients.find((r) => r.address === "alice@example.org")?.status).toBe("delivered");
        const bob = env?.recipients.find((r) => r.address === "bob@example.org");
        expect(bob?.status).toBe("pending");
        expect(bob?.lastReply).toMatch(/452 4\.2\.2 mailbox full/);
        // backoff grows: the next attempt is further away than the first retry
        expect((env?.nextAttemptAt ?? 0) - Date.now()).toBeGreaterThan(0);
        break;
      }
      if (Date.now() > deadline) throw new Error("no retries");
      await sleep(50);
    }
    world.lmtp.replies.delete("bob@example.org");
    await waitGone(queueDir, id);
    expect(copiesTo("alice@example.org", "retry-1")).toBe(1);
    expect(copiesTo("bob@example.org", "retry-1")).toBe(1);
  });
});

describe("DSN", () => {
  it("bounces a permanent LMTP failure to the sender as an RFC 3464 report", async () => {
    const id = await send(
      smtp.mx,
      "bob@example.org",
      ["reject@example.org", "alice@example.org"],
      "Subject: bounce-me\r\n\r\noriginal body\r\n",
    );
    await waitGone(queueDir, id);
    const deadline = Date.now() + 10_000;
    let dsn = world.lmtp.messages.find((m) => m.from === "" && m.data.toString().includes(id));
    while (!dsn) {
      if (Date.now() > deadline) throw new Error("no DSN");
      await sleep(50);
      dsn = world.lmtp.messages.find((m) => m.from === "" && m.data.toString().includes(id));
    }
    const text = dsn.data.toString();
    expect(dsn.to).toEqual(["bob@example.org"]);
    expect(text).toMatch(/Content-Type: multipart\/report; report-type=delivery-status; boundary=/);
    expect(text).toContain("Content-Type: message/delivery-status");
    expect(text).toContain("Reporting-MTA: dns; mx.example.org");
    expect(text).toContain("Final-Recipient: rfc822; reject@example.org");
    expect(text).toContain("Action: failed");
    expect(text).toContain("Status: 5.2.1");
    expect(text).toMatch(/Diagnostic-Code: smtp; 550 5\.2\.1 mailbox disabled/);
    expect(text).toContain("Content-Type: message/rfc822");
    expect(text).toContain("original body");
    // only the failed recipient is reported; the other got its copy
    expect(text).not.toContain("Final-Recipient: rfc822; alice@example.org");
    expect(copiesTo("alice@example.org", "bounce-me")).toBe(1);
  });

  it("never bounces to the null sender", async () => {
    const before = world.lmtp.messages.length;
    const id = await send(smtp.mx, "", ["reject@example.org"], "Subject: null-sender\r\n\r\nx\r\n");
    await waitGone(queueDir, id);
    await sleep(1000);
    expect(world.lmtp.messages.slice(before).filter((m) => m.data.toString().includes(id))).toEqual([]);
    expect(await readdir(join(queueDir, "msg"))).toEqual([]);
  });

  it("sends no DSN for NOTIFY=NEVER, and a success DSN for NOTIFY=SUCCESS", async () => {
    const never = await send(
      smtp.mx,
      "bob@example.org",
      ["reject@example.org"],
      "Subject: never\r\n\r\nx\r\n",
      {
        rcpt: ["NOTIFY=NEVER"],
      },
    );
    const success = await send(
      smtp.mx,
      "bob@example.org",
      ["alice@example.org"],
      "Subject: success\r\n\r\nx\r\n",
      {
        rcpt: ["NOTIFY=SUCCESS,FAILURE"],
        mail: ["RET=HDRS", "ENVID=env-42"],
      },
    );
    await waitGone(queueDir, never);
    await waitGone(queueDir, success);
    await sleep(1000);
    const dsns = world.lmtp.messages.filter((m) => m.from === "");
    expect(dsns.some((m) => m.data.toString().includes(never))).toBe(false);
    const ok = dsns.find((m) => m.data.toString().includes(success));
    const text = ok?.data.toString() ?? "";
    expect(text).toContain("Action: delivered");
    expect(text).toContain("Status: 2.0.0");
    expect(text).toContain("Original-Envelope-Id: env-42");
    // RET=HDRS: the header section only
    expect(text).toContain("Content-Type: text/rfc822-headers");
    expect(text).toContain("Subject: success");
  });

  it("gives up after maxAgeSeconds with a 4.4.7 DSN", async () => {
    world.lmtp.replies.set("tempfail@example.org", { code: 451, text: "4.3.0 store busy" });
    const id = await send(
      expiring.mx,
      "bob@example.org",
      ["tempfail@example.org"],
      "Subject: expire\r\n\r\nx\r\n",
    );
    await waitGone(expiring.config.queue?.dir ?? "", id);
    const deadline = Date.now() + 10_000;
    let dsn = world.lmtp.messages.find((m) => m.from === "" && m.data.toString().includes(id));
    while (!dsn) {
      if (Date.now() > deadline) throw new Error("no expiry DSN");
      await sleep(50);
      dsn = world.lmtp.messages.find((m) => m.from === "" && m.data.toString().includes(id));
    }
    expect(dsn.data.toString()).toContain("Status: 4.4.7");
    expect(dsn.data.toString()).toMatch(/expired after 1 s in the queue; last error: 451 4\.3\.0 store busy/);
  });
});

describe("per-destination concurrency", () => {
  it("never opens more than concurrencyPerDestination sessions to one store", async () => {
    const dir = await mkdtemp(join(world.dir, "queue-conc-"));
    const store = await startSink({ lmtp: true });
    const limited = await startService(
      world,
      makeConfig({
        queueDir: dir,
        lmtpPort: store.port,
        queue: { concurrencyPerDestination: 2 },
        // The sink counts every session: the RCPT-time quota probes (smtp/quota-check.ts) are not the queue's.
        smtp: { quotaCheck: { enabled: false } },
      }),
    );
    store.delayMs = 150;
    try {
      const ids = await Promise.all(
        Array.from({ length: 8 }, (_, i) =>
          send(limited.mx, "s@remote.test", ["alice@example.org"], `Subject: conc-${i}\r\n\r\nx\r\n`),
        ),
      );
      for (const id of ids) await waitGone(dir, id);
      expect(store.maxConcurrent).toBe(2);
      expect(store.messages).toHaveLength(8);
    } finally {
      await limited.service.drain(1000);
      await store.close();
    }
  });
});
