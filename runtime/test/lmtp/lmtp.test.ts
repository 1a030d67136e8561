import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RuntimeConfigSchema } from "../../src/config/schema.js";
import { createDirectory } from "../../src/directory/index.js";
import type { Directory } from "../../src/directory/types.js";
import { startLmtp } from "../../src/lmtp/service.js";
import type { DeliveryHook } from "../../src/lmtp/sieve-hook.js";
import type { RunningService } from "../../src/service.js";
import { createMaildirStore } from "../../src/store/index.js";
import type { MailStore } from "../../src/store/types.js";
import { type Slapd, startSlapd, TEST_ACCOUNTS } from "../support/slapd.js";

const CLIENT = join(import.meta.dirname, "lmtp-client.py");

interface Result {
  rcpt: Array<[number, string]>;
  data: Array<[number, string]>;
}

function lmtp(port: number, rcpts: string[], message: string, from = "sender@example.net"): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = execFile("python3", [CLIENT], { timeout: 20_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${err.message}\n${stderr}`));
      else resolve(JSON.parse(stdout) as Result);
    });
    child.stdin?.end(JSON.stringify({ host: "127.0.0.1", port, from, rcpts, message }));
  });
}

let ldap: Slapd;
let directory: Directory;
let root: string;
let store: MailStore;
const running: RunningService[] = [];

async function serve(hook?: DeliveryHook, maxMessageBytes = 1_000_000): Promise<number> {
  const config = RuntimeConfigSchema.parse({
    host: { name: "store.test", roles: ["store"] },
    ldap: { ...ldap.ldapConfig(), cacheTtlSeconds: 0 },
    store: { root, fsync: true, defaultQuotaBytes: 1_000_000 },
    lmtp: { listen: ["127.0.0.1:0"], maxMessageBytes },
  });
  const service = await startLmtp(
    { config, logger: pino({ level: "silent" }), metrics: new Registry(), directory, store },
    hook ? { hook } : {},
  );
  running.push(service);
  return Number(service.addresses()[0]?.split(":").pop());
}

async function messages(user: string, folder = ""): Promise<string[]> {
  const out: string[] = [];
  for (const sub of ["new", "cur"]) {
    const dir = join(root, user, folder, sub);
    for (const name of await readdir(dir).catch(() => [])) out.push(await readFile(join(dir, name), "utf8"));
  }
  return out;
}

/** The names in one of an account's Maildir subdirectories (none when it does not exist). */
async function files(user: string, sub: string): Promise<string[]> {
  return readdir(join(root, user, sub)).catch(() => []);
}

const MESSAGE = "From: sender@example.net\r\nSubject: hello\r\n\r\nline one\r\n.leading dot\r\n";

beforeAll(async () => {
  ldap = await startSlapd({
    accounts: [
      ...TEST_ACCOUNTS,
      { uid: "tiny", mail: "tiny@example.org", password: "tiny-secret-4", quotaBytes: 600 },
      { uid: "broken", mail: "broken@example.org", password: "broken-secret-5" },
      { uid: "jammed", mail: "jammed@example.org", password: "jammed-secret-6" },
    ],
  });
  directory = createDirectory({ ...ldap.ldapConfig(), cacheTtlSeconds: 0 });
  root = await mkdtemp(join(tmpdir(), "lmtp-"));
  store = createMaildirStore({ root, fsync: true, defaultQuotaBytes: 1_000_000 });
});

afterAll(async () => {
  for (const s of running) await s.drain(1000);
  await store?.close();
  await directory?.close();
  await ldap?.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

describe("LMTP delivery (RFC 2033) with smtplib.LMTP against slapd", () => {
  it("answers each recipient after DATA and stores with trace headers", async () => {
    const port = await serve();
    const r = await lmtp(port, ["alice@example.org", "nobody@example.org", "Robert@Example.NET"], MESSAGE);
    expect(r.rcpt[0]?.[0]).toBe(250);
    expect(r.rcpt[1]).toEqual([550, "5.1.1 No such user here"]);
    expect(r.data).toEqual([
      [250, "2.0.0 Delivered"],
      [250, "2.0.0 Delivered"],
    ]);
    const [alice] = await messages("alice");
    expect(alice).toMatch(
      /^Return-Path: <sender@example\.net>\r\nDelivered-To: alice@example\.org\r\nReceived: from /,
    );
    expect(alice).toContain("with LMTP id");
    expect(alice).toContain("\r\n.leading dot\r\n"); // dot-unstuffed
    const [bob] = await messages("bob");
    expect(bob).toContain("Delivered-To: Robert@Example.NET");
    // the store indexed them: UID 1 in INBOX
    const status = await (await store.open("alice")).status("INBOX");
    expect(status.messages).toBe(1);
  });

  it("delivers one copy to an account named twice in one transaction (address and alias)", async () => {
    const port = await serve();
    const before = (await messages("carol")).length;
    const r = await lmtp(
      port,
      ["carol@example.org", "alice@example.org", "A.Liddell@example.org", "postmaster@example.org"],
      "Subject: once\r\n\r\nonly one copy\r\n",
    );
    expect(r.data.map(([code]) => code)).toEqual([250, 250, 250, 250]);
    const alice = (await messages("alice")).filter((m) => m.includes("Subject: once"));
    expect(alice).toHaveLength(1);
    expect(alice[0]).toContain("Delivered-To: alice@example.org");
    expect((await messages("carol")).length).toBe(before + 1);
  });

  it("552 5.2.2 for a recipient over quota, 250 for the others in the same transaction", async () => {
    const port = await serve();
    const big = `Subject: big\r\n\r\n${"x".repeat(700)}\r\n`;
    const r = await lmtp(port, ["tiny@example.org", "bob@example.org"], big);
    expect(r.data).toEqual([
      [552, "5.2.2 Mailbox is full"],
      [250, "2.0.0 Delivered"],
    ]);
    expect(await messages("tiny")).toEqual([]);
  });

  it("451 4.3.0 when the store fails, and nothing half-written", async () => {
    const port = await serve();
    const TEMPFAIL = [451, "4.3.0 Temporary failure storing the message, try again later"];
    // the account's Maildir cannot even be made: its path is a file
    await writeFile(join(root, "broken"), "not a directory");
    const r = await lmtp(port, ["broken@example.org"], MESSAGE);
    expect(r.data).toEqual([TEMPFAIL]);
    for (const sub of ["tmp", "new", "cur"]) expect(await files("broken", sub)).toEqual([]);
    // the Maildir is there but the index cannot be written, so the failure comes
    // after the message was written to tmp/ (and renamed into new/): a 451 must
    // leave no file behind, or the sender's retry would deliver it twice
    for (const sub of ["tmp", "new", "cur"]) await mkdir(join(root, "jammed", sub), { recursive: true });
    await mkdir(join(root, "jammed", "mailinfra-index.tmp"));
    await mkdir(join(root, "jammed", "mailinfra-index.log"));
    const j = await lmtp(port, ["jammed@example.org", "bob@example.org"], MESSAGE);
    expect(j.data).toEqual([TEMPFAIL, [250, "2.0.0 Delivered"]]);
    for (const sub of ["tmp", "new", "cur"]) expect(await files("jammed", sub), sub).toEqual([]);
  });

  it("refuses an oversized message per recipient", async () => {
    const port = await serve(undefined, 200);
    const r = await lmtp(
      port,
      ["alice@example.org", "bob@example.org"],
      `Subject: x\r\n\r\n${"y".repeat(500)}\r\n`,
    );
    expect(r.data.map(([c]) => c)).toEqual([552, 552]);
  });

  it("runs the delivery hook: fileinto, discard, reject", async () => {
    const hook: DeliveryHook = {
      async actions({ message, account }) {
        const text = message.toString();
        if (text.includes("Subject: spam")) return [{ type: "fileinto", mailbox: "Junk", create: true }];
        if (text.includes("Subject: drop")) return [{ type: "discard" }];
        if (account.uid === "bob" && text.includes("Subject: nope"))
          return [{ type: "reject", reason: "Not wanted" }];
        if (text.includes("Subject: lost")) return [{ type: "fileinto", mailbox: "No/Such" }];
        return [{ type: "keep" }];
      },
    };
    const port = await serve(hook);
    const before = (await messages("alice")).length;
    await lmtp(port, ["alice@example.org"], "Subject: spam\r\n\r\nbuy\r\n");
    expect(await messages("alice", ".Junk")).toHaveLength(1);
    await lmtp(port, ["alice@example.org"], "Subject: drop\r\n\r\nbye\r\n");
    const r = await lmtp(port, ["alice@example.org", "bob@example.org"], "Subject: nope\r\n\r\nx\r\n");
    expect(r.data).toEqual([
      [250, "2.0.0 Delivered"],
      [550, "5.7.1 Not wanted"],
    ]);
    // fileinto a missing folder without :create keeps the message in INBOX
    await lmtp(port, ["alice@example.org"], "Subject: lost\r\n\r\nx\r\n");
    expect((await messages("alice")).length).toBe(before + 2);
  });

  it("a client that disconnects mid-DATA leaves no message and no temp file", async () => {
    const port = await serve();
    const before = (await messages("alice")).length;
    let buf = "";
    await new Promise<void>((resolve, reject) => {
      const socket = connect(port, "127.0.0.1");
      const steps = [
        "LHLO client\r\n",
        "MAIL FROM:<a@example.net>\r\n",
        "RCPT TO:<alice@example.org>\r\n",
        "DATA\r\n",
        "Subject: half\r\n\r\nsome of the body",
      ];
      socket.on("data", (d) => {
        buf += d.toString();
        const replies = buf.split("\r\n").filter((l) => /^\d{3} /.test(l)).length;
        if (replies >= 5 - (steps.length - 1) && steps.length > 0) {
          const next = steps.shift() as string;
          socket.write(next);
          if (steps.length === 0) setTimeout(() => socket.destroy(), 100);
        }
      });
      socket.on("close", () => resolve());
      socket.on("error", reject);
    });
    expect(buf).toMatch(/\r\n354 /);
    await new Promise((r) => setTimeout(r, 200));
    expect((await messages("alice")).length).toBe(before);
    expect(await readdir(join(root, "alice", "tmp"))).toEqual([]);
  });

  it("451 4.4.3 while the directory is down, never 550", async () => {
    const port = await serve();
    await ldap.halt();
    try {
      const r = await lmtp(port, ["alice@example.org"], MESSAGE);
      expect(r.rcpt).toEqual([[451, "4.4.3 Directory temporarily unavailable, try again later"]]);
      expect(r.data).toEqual([]);
    } finally {
      await ldap.resume();
    }
  });
});
