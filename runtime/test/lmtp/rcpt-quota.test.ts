/**
 * Over-quota at LMTP RCPT (lmtp/rcpt-quota.ts): Python's smtplib.LMTP against
 * the runtime's LMTP service, a real slapd and a Maildir store. A full
 * mailbox, or one the announced SIZE (RFC 1870) would overflow, gets
 * 552 5.2.2 at RCPT (RFC 1870 §6.1), before the message is sent; a store fault
 * while checking is no refusal (DATA decides).
 */
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RuntimeConfigSchema } from "../../src/config/schema.js";
import { createDirectory } from "../../src/directory/index.js";
import type { Directory } from "../../src/directory/types.js";
import { startLmtp } from "../../src/lmtp/service.js";
import type { RunningService } from "../../src/service.js";
import { createMaildirStore } from "../../src/store/index.js";
import type { MailStore } from "../../src/store/types.js";
import { rcptSession } from "../support/rcpt-client.js";
import { type Slapd, startSlapd, TEST_ACCOUNTS } from "../support/slapd.js";

let ldap: Slapd;
let directory: Directory;
let root: string;
let store: MailStore;
let lmtp: RunningService;
let port: number;

/** One stored message of exactly `bytes` octets (CRLF already). */
function messageOf(bytes: number): Buffer {
  const head = "Subject: filler\r\n\r\n";
  return Buffer.from(head + "x".repeat(bytes - head.length));
}

beforeAll(async () => {
  ldap = await startSlapd({
    accounts: [
      ...TEST_ACCOUNTS,
      // At its limit: 600 of 600 bytes used.
      { uid: "full", mail: "full@example.org", password: "full-secret-1", quotaBytes: 600 },
      // 400 of 1000 used: 600 left.
      { uid: "half", mail: "half@example.org", password: "half-secret-2", quotaBytes: 1000 },
      // Its Maildir path is a file: the store fails.
      { uid: "broken", mail: "broken@example.org", password: "broken-secret-3", quotaBytes: 1000 },
    ],
  });
  directory = createDirectory({ ...ldap.ldapConfig(), cacheTtlSeconds: 0 });
  root = await mkdtemp(join(tmpdir(), "lmtp-rcpt-quota-"));
  store = createMaildirStore({ root, fsync: true, defaultQuotaBytes: 1_000_000 });
  await (await store.open("full", { quotaBytes: 600 })).append("INBOX", messageOf(600));
  await (await store.open("half", { quotaBytes: 1000 })).append("INBOX", messageOf(400));
  await writeFile(join(root, "broken"), "not a directory");
  const config = RuntimeConfigSchema.parse({
    host: { name: "store.test", roles: ["store"] },
    ldap: { ...ldap.ldapConfig(), cacheTtlSeconds: 0 },
    store: { root, fsync: true, defaultQuotaBytes: 1_000_000 },
    lmtp: { listen: ["127.0.0.1:0"] },
  });
  lmtp = await startLmtp({
    config,
    logger: pino({ level: "silent" }),
    metrics: new Registry(),
    directory,
    store,
  });
  port = Number(lmtp.addresses()[0]?.split(":").pop());
});

afterAll(async () => {
  await lmtp?.drain(1000);
  await store?.close();
  await directory?.close();
  await ldap?.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

const inbox = async (user: string): Promise<string[]> => {
  const names: string[] = [];
  for (const sub of ["new", "cur"]) names.push(...(await readdir(join(root, user, sub)).catch(() => [])));
  return names;
};

describe("LMTP RCPT and the recipient's quota (RFC 1870 §6.1)", () => {
  it("552 5.2.2 at RCPT for a mailbox at its limit; the others in the transaction get 250 and the message", async () => {
    const r = await rcptSession({
      port,
      lmtp: true,
      from: "sender@example.net",
      rcpts: ["full@example.org", "bob@example.org"],
      message: "Subject: rcpt-quota-1\r\n\r\nhello\r\n",
    });
    expect(r.rcpt).toEqual([
      [552, "5.2.2 Mailbox is full"],
      [250, "Accepted"],
    ]);
    expect(r.data).toEqual([[250, "2.0.0 Delivered"]]);
    expect(await inbox("full")).toHaveLength(1); // only the filler
  });

  it("552 5.2.2 at RCPT when MAIL FROM's SIZE is more than what is left, 250 when it fits", async () => {
    const tooBig = await rcptSession({
      port,
      lmtp: true,
      from: "sender@example.net",
      mailOptions: ["SIZE=700"],
      rcpts: ["half@example.org"],
    });
    expect(tooBig.mail[0]).toBe(250);
    expect(tooBig.rcpt).toEqual([[552, "5.2.2 Mailbox is full"]]);
    const fits = await rcptSession({
      port,
      lmtp: true,
      from: "sender@example.net",
      mailOptions: ["SIZE=500"],
      rcpts: ["half@example.org"],
    });
    expect(fits.rcpt).toEqual([[250, "Accepted"]]);
    // Without SIZE the half-full mailbox takes the RCPT (DATA decides on the real size).
    const noSize = await rcptSession({ port, lmtp: true, from: "", rcpts: ["half@example.org"] });
    expect(noSize.rcpt).toEqual([[250, "Accepted"]]);
  });

  it("250 at RCPT for an account with room, with and without SIZE", async () => {
    const r = await rcptSession({
      port,
      lmtp: true,
      from: "sender@example.net",
      mailOptions: ["SIZE=1000"],
      rcpts: ["alice@example.org", "bob@example.org"],
    });
    expect(r.rcpt).toEqual([
      [250, "Accepted"],
      [250, "Accepted"],
    ]);
  });

  it("a store fault while checking is no 552: the RCPT is taken and DATA answers 451", async () => {
    const r = await rcptSession({
      port,
      lmtp: true,
      from: "sender@example.net",
      rcpts: ["broken@example.org"],
      message: "Subject: rcpt-quota-broken\r\n\r\nhello\r\n",
    });
    expect(r.rcpt).toEqual([[250, "Accepted"]]);
    expect(r.data).toEqual([[451, "4.3.0 Temporary failure storing the message, try again later"]]);
  });
});
