/** Queue pieces on their own: the store's crash recovery, the ops CLI, DSN text, backoff, the semaphore. */
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { runQueueCommand } from "../../src/queue/cli.js";
import { buildDsn, rfc5322Date, statusFromReply } from "../../src/queue/dsn.js";
import { SYNC_WRITE_MAX_BYTES } from "../../src/queue/durable.js";
import { backoffSeconds } from "../../src/queue/runner.js";
import { KeyedSemaphore } from "../../src/queue/semaphore.js";
import { isQueueId, newQueueId, QueueStore } from "../../src/queue/store.js";
import type { QueuedEnvelope } from "../../src/queue/types.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "mailinfra-queue-unit-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const request = (to: string) => ({
  mailFrom: "s@remote.test",
  recipients: [{ address: to, original: to, route: { kind: "lmtp" as const } }],
});

describe("QueueStore", () => {
  it("commits message then envelope and reads them back", async () => {
    const store = new QueueStore(dir);
    await store.open();
    const env = await store.enqueue(Buffer.from("Subject: a\r\n\r\nx\r\n"), request("alice@example.org"));
    expect(isQueueId(env.id)).toBe(true);
    expect(await store.ids()).toEqual([env.id]);
    expect((await store.readMessage(env.id)).toString()).toContain("Subject: a");
    expect((await store.load(env.id))?.recipients[0]?.status).toBe("pending");
  });

  it("removes what a crash left half-done at open: temp files and state without its message", async () => {
    const store = new QueueStore(dir);
    await store.open();
    const kept = await store.enqueue(Buffer.from("kept\r\n"), request("alice@example.org"));
    const orphan = newQueueId();
    await writeFile(join(dir, "tmp", `${orphan}.msg.1.1`), '{"half');
    await writeFile(join(dir, "state", `${orphan}.json`), "{}");
    await store.open();
    expect(await readdir(join(dir, "tmp"))).toEqual([]);
    expect(await readdir(join(dir, "state"))).toEqual([]);
    expect(await store.ids()).toEqual([kept.id]);
    expect((await store.readMessage(kept.id)).toString()).toBe("kept\r\n");
  });

  it("removes at open the queue files a crash cut short before their fsync, keeps whole ones", async () => {
    const store = new QueueStore(dir);
    await store.open();
    const kept = await store.enqueue(Buffer.from("Subject: k\r\n\r\nkept\r\n"), request("alice@example.org"));
    const long = await store.enqueue(
      Buffer.alloc(SYNC_WRITE_MAX_BYTES + 10, "w"),
      request("bob@example.org"),
    );
    const whole = await readFile(join(dir, "msg", kept.id));
    const nl = whole.indexOf(0x0a);
    // What the disk may hold after a crash between the rename and the fsyncs: nothing, half the
    // envelope line, the envelope and part of the message, or more bytes than announced.
    const cut = {
      empty: Buffer.alloc(0),
      halfEnvelope: whole.subarray(0, Math.floor(nl / 2)),
      shortMessage: whole.subarray(0, whole.length - 3),
      notJson: Buffer.from("x".repeat(40) + "\nbody\r\n"),
      tooLong: Buffer.concat([whole, Buffer.from("\0\0\0\0")]),
    };
    const ids: Record<string, string> = {};
    for (const [name, bytes] of Object.entries(cut)) {
      ids[name] = newQueueId();
      await writeFile(join(dir, "msg", ids[name] as string), bytes);
      await writeFile(join(dir, "state", `${ids[name]}.json`), "{}");
    }
    const removed = await store.open();
    expect(removed.sort()).toEqual(Object.values(ids).sort());
    expect((await store.ids()).sort()).toEqual([kept.id, long.id].sort());
    expect(await readdir(join(dir, "state"))).toEqual([]);
    expect((await store.readMessage(kept.id)).toString()).toBe("Subject: k\r\n\r\nkept\r\n");
    expect((await store.readMessage(long.id)).length).toBe(SYNC_WRITE_MAX_BYTES + 10);
  });

  it("prefers the saved state over the envelope written at enqueue", async () => {
    const store = new QueueStore(dir);
    await store.open();
    const env = await store.enqueue(Buffer.from("m\r\n"), request("alice@example.org"));
    expect((await store.load(env.id))?.attempts).toBe(0);
    await store.save({ ...env, attempts: 3 });
    expect((await store.load(env.id))?.attempts).toBe(3);
    expect((await store.loadWithMessage(env.id))?.envelope.attempts).toBe(3);
    expect(await store.remove(env.id)).toBe(true);
    expect(await store.load(env.id)).toBeNull();
    expect(await readdir(join(dir, "state"))).toEqual([]);
  });

  it("reads an envelope line longer than one read buffer", async () => {
    const store = new QueueStore(dir);
    await store.open();
    const many = Array.from({ length: 1000 }, (_, i) => ({
      address: `user${i}@example.org`,
      original: `user${i}@example.org`,
      route: { kind: "lmtp" as const },
    }));
    const env = await store.enqueue(Buffer.from("big\r\n"), { mailFrom: "s@remote.test", recipients: many });
    expect((await store.load(env.id))?.recipients).toHaveLength(1000);
  });

  it("writes small and large messages byte for byte (both write paths of durable.ts), tmp/ left empty", async () => {
    const store = new QueueStore(dir);
    await store.open();
    const small = Buffer.from("Subject: s\r\n\r\nsmall\r\n");
    const large = Buffer.concat([
      Buffer.from("Subject: l\r\n\r\n"),
      Buffer.alloc(SYNC_WRITE_MAX_BYTES + 1, "y"),
    ]);
    const a = await store.enqueue(small, request("alice@example.org"));
    const b = await store.enqueue(large, request("bob@example.org"));
    expect((await store.readMessage(a.id)).equals(small)).toBe(true);
    expect((await store.readMessage(b.id)).equals(large)).toBe(true);
    expect(b.size).toBe(large.length);
    expect(await readdir(join(dir, "tmp"))).toEqual([]);
  });

  it("a failed commit rejects, leaves no temp file and no message (both write paths)", async () => {
    const store = new QueueStore(dir);
    await store.open();
    await rm(join(dir, "msg"), { recursive: true });
    for (const size of [10, SYNC_WRITE_MAX_BYTES + 1]) {
      await expect(store.enqueue(Buffer.alloc(size, "z"), request("alice@example.org"))).rejects.toThrow(
        /ENOENT/,
      );
      expect(await readdir(join(dir, "tmp"))).toEqual([]);
    }
  });

  it("refuses to remove anything that is not a queue id (no path tricks)", async () => {
    const store = new QueueStore(dir);
    await store.open();
    expect(await store.remove("../env")).toBe(false);
    expect(await store.remove("nope")).toBe(false);
  });
});

describe("mailinfra queue", () => {
  it("lists, shows, flushes, removes and reports unknown ids", async () => {
    const store = new QueueStore(dir);
    await store.open();
    const a = await store.enqueue(Buffer.from("a\r\n"), request("alice@example.org"));
    const b = await store.enqueue(Buffer.from("b\r\n"), request("bob@example.org"));
    const out: string[] = [];
    const err: string[] = [];
    const io = { out: (l: string) => out.push(l), err: (l: string) => err.push(l) };
    expect(await runQueueCommand(dir, ["list"], io)).toBe(0);
    expect(out.join("\n")).toContain(a.id);
    expect(out.join("\n")).toContain("bob@example.org");
    expect(out.at(-1)).toBe("-- 2 message(s)");
    expect(await runQueueCommand(dir, ["show", b.id], io)).toBe(0);
    expect(JSON.parse(out.at(-1) ?? "{}").id).toBe(b.id);
    expect(await runQueueCommand(dir, ["flush"], io)).toBe(0);
    expect(await store.takeFlushRequest()).toBe(true);
    expect(await store.takeFlushRequest()).toBe(false);
    expect(await runQueueCommand(dir, ["remove", a.id], io)).toBe(0);
    expect(await store.ids()).toEqual([b.id]);
    expect(await readdir(join(dir, "msg"))).toEqual([b.id]);
    expect(await runQueueCommand(dir, ["remove", a.id], io)).toBe(1);
    expect(err.at(-1)).toBe(`no such message: ${a.id}`);
    expect(await runQueueCommand(dir, ["frobnicate"], io)).toBe(2);
    expect(await runQueueCommand(join(dir, "nope"), ["list"], io)).toBe(1);
    expect(err.at(-1)).toMatch(/^no queue at .*nope/);
  });
});

describe("DSN", () => {
  const envelope: QueuedEnvelope = {
    version: 1,
    id: "abc",
    receivedAt: Date.UTC(2024, 0, 2, 3, 4, 5),
    mailFrom: "s@remote.test",
    size: 10,
    recipients: [],
    attempts: 1,
    nextAttemptAt: 0,
    dsn: { envid: "E1\r\nInjected: yes" },
  };
  const original = Buffer.from("Subject: orig\r\nFrom: s@remote.test\r\n\r\nthe body\r\n");

  it("builds an RFC 3464 report with per-recipient fields and the original", () => {
    const text = buildDsn({
      reportingMta: "mx.example.org",
      envelope,
      original,
      entries: [
        {
          recipient: {
            address: "u@example.org",
            original: "U@example.org",
            route: { kind: "lmtp" },
            status: "failed",
            lastReply: "550 5.1.1 no such user",
            remoteMta: "store1",
            orcpt: "rfc822;U@example.org",
          },
          action: "failed",
          status: "5.1.1",
        },
      ],
    }).toString();
    expect(text).toMatch(/^From: Mail Delivery System <MAILER-DAEMON@mx\.example\.org>\r\n/);
    expect(text).toContain("To: <s@remote.test>");
    expect(text).toContain("Auto-Submitted: auto-replied");
    expect(text).toContain("Arrival-Date: Tue, 2 Jan 2024 03:04:05 +0000");
    expect(text).toContain(
      "Final-Recipient: rfc822; u@example.org\r\nOriginal-Recipient: rfc822;U@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\nRemote-MTA: dns; store1\r\nDiagnostic-Code: smtp; 550 5.1.1 no such user",
    );
    // a client-given ENVID cannot add header lines
    expect(text).toContain("Original-Envelope-Id: E1 Injected: yes");
    expect(text).not.toMatch(/^Injected:/m);
    expect(text).toContain("Content-Type: message/rfc822\r\n\r\nSubject: orig");
    const boundary = text.match(/boundary="([^"]+)"/)?.[1] ?? "";
    expect(text.trimEnd().endsWith(`--${boundary}--`)).toBe(true);
    expect(text).not.toMatch(/[^\r]\n/);
  });

  it("returns only the header section for RET=HDRS", () => {
    const text = buildDsn({
      reportingMta: "mx.example.org",
      envelope: { ...envelope, dsn: { ret: "HDRS" } },
      original,
      entries: [],
    }).toString();
    expect(text).toContain("Content-Type: text/rfc822-headers");
    expect(text).not.toContain("the body");
  });

  it("takes the enhanced status from the reply, else the fallback", () => {
    expect(statusFromReply("452 4.2.2 mailbox full", "5.0.0")).toBe("4.2.2");
    expect(statusFromReply("550 go away", "5.0.0")).toBe("5.0.0");
    expect(statusFromReply(undefined, "4.4.7")).toBe("4.4.7");
    expect(rfc5322Date(new Date(Date.UTC(2026, 10, 29, 5, 6, 7)))).toBe("Sun, 29 Nov 2026 05:06:07 +0000");
  });
});

describe("backoff and concurrency", () => {
  it("doubles from the initial delay up to the cap", () => {
    expect([1, 2, 3, 4, 5, 6].map((n) => backoffSeconds(n, 300, 4000))).toEqual([
      300, 600, 1200, 2400, 4000, 4000,
    ]);
  });

  it("gives each key at most `limit` holders and hands slots to waiters in order", async () => {
    const sem = new KeyedSemaphore(2);
    const r1 = await sem.acquire("a");
    const r2 = await sem.acquire("a");
    const other = await sem.acquire("b");
    let third = false;
    const p3 = sem.acquire("a").then((r) => {
      third = true;
      return r;
    });
    await new Promise((r) => setTimeout(r, 10));
    expect(third).toBe(false);
    expect(sem.inUse("a")).toBe(2);
    r1();
    r1(); // releasing twice is harmless
    const r3 = await p3;
    expect(sem.inUse("a")).toBe(2);
    r2();
    r3();
    other();
    expect(sem.inUse("a")).toBe(0);
    expect(sem.inUse("b")).toBe(0);
  });
});
