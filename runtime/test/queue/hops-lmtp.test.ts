/**
 * Mail loops on LMTP (RFC 5321 §6.3, queue/loop.ts): more Received fields
 * than the store's smtp.hopCountLimit and every recipient gets 554 5.4.6
 * after DATA; nothing is stored. In its own file: the SMTP server's
 * enhanced-code patch (smtp/replies.ts) is process-wide and would change how
 * this LMTP server words its replies. Client: python3's smtplib.LMTP.
 */
import { execFile } from "node:child_process";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
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
import { type Slapd, startSlapd, TEST_ACCOUNTS } from "../support/slapd.js";

const LMTP_CLIENT = join(import.meta.dirname, "..", "lmtp", "lmtp-client.py");

let ldap: Slapd;
let directory: Directory;
let root: string;
let store: MailStore;
const running: RunningService[] = [];

async function serve(smtp?: Record<string, unknown>): Promise<number> {
  const config = RuntimeConfigSchema.parse({
    host: { name: "store.test", roles: ["store"] },
    ldap: { ...ldap.ldapConfig(), cacheTtlSeconds: 0 },
    store: { root, fsync: true, defaultQuotaBytes: 1_000_000 },
    lmtp: { listen: ["127.0.0.1:0"] },
    ...(smtp ? { smtp: { domains: ["example.org"], ...smtp } } : {}),
  });
  const service = await startLmtp({
    config,
    logger: pino({ level: "silent" }),
    metrics: new Registry(),
    directory,
    store,
  });
  running.push(service);
  return Number(service.addresses()[0]?.split(":").pop());
}

beforeAll(async () => {
  ldap = await startSlapd({ accounts: TEST_ACCOUNTS });
  directory = createDirectory({ ...ldap.ldapConfig(), cacheTtlSeconds: 0 });
  root = await mkdtemp(join(tmpdir(), "lmtp-hops-"));
  store = createMaildirStore({ root, fsync: true, defaultQuotaBytes: 1_000_000 });
});

afterAll(async () => {
  for (const s of running) await s.drain(1000);
  await store?.close();
  await directory?.close();
  await ldap?.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

function message(hops: number, subject: string): string {
  const received = Array.from(
    { length: hops },
    (_, i) =>
      `Received: from hop${i}.example.net\r\n\tby hop${i + 1}.example.net; Sun, 29 Nov 2026 10:00:00 +0000\r\n`,
  ).join("");
  return `${received}From: someone@example.net\r\nSubject: ${subject}\r\n\r\nbody\r\n`;
}

function lmtp(port: number, rcpts: string[], body: string): Promise<Array<[number, string]>> {
  return new Promise((resolve, reject) => {
    const c = execFile("python3", [LMTP_CLIENT], { timeout: 20_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${err.message}\n${stderr}`));
      else resolve((JSON.parse(stdout) as { data: Array<[number, string]> }).data);
    });
    c.stdin?.end(JSON.stringify({ host: "127.0.0.1", port, from: "s@example.net", rcpts, message: body }));
  });
}

async function stored(user: string, subject: string): Promise<number> {
  let n = 0;
  for (const sub of ["new", "cur", "tmp"]) {
    for (const name of await readdir(join(root, user, sub)).catch(() => [])) {
      if ((await readFile(join(root, user, sub, name), "latin1")).includes(`Subject: ${subject}\r\n`)) n++;
    }
  }
  return n;
}

describe("LMTP hop count limit (RFC 5321 §6.3)", () => {
  it("refuses every recipient with 554 5.4.6 over the configured limit and stores nothing", async () => {
    const port = await serve({ hopCountLimit: 5 });
    const [alice, bob] = TEST_ACCOUNTS;
    const rcpts = [alice?.mail ?? "", bob?.mail ?? ""];
    expect(await lmtp(port, rcpts, message(6, "loop-lmtp"))).toEqual([
      [554, "5.4.6 Too many hops"],
      [554, "5.4.6 Too many hops"],
    ]);
    expect(await stored(alice?.uid ?? "", "loop-lmtp")).toBe(0);
    expect(await stored(bob?.uid ?? "", "loop-lmtp")).toBe(0);
    expect(await lmtp(port, [rcpts[0] ?? ""], message(5, "loop-lmtp-ok"))).toEqual([
      [250, "2.0.0 Delivered"],
    ]);
    expect(await stored(alice?.uid ?? "", "loop-lmtp-ok")).toBe(1);
  });

  it("uses the default of 50 when the host has no smtp section", async () => {
    const port = await serve();
    const [alice] = TEST_ACCOUNTS;
    expect(await lmtp(port, [alice?.mail ?? ""], message(51, "loop-lmtp-51"))).toEqual([
      [554, "5.4.6 Too many hops"],
    ]);
    expect(await lmtp(port, [alice?.mail ?? ""], message(50, "loop-lmtp-50"))).toEqual([
      [250, "2.0.0 Delivered"],
    ]);
    expect(await stored(alice?.uid ?? "", "loop-lmtp-51")).toBe(0);
    expect(await stored(alice?.uid ?? "", "loop-lmtp-50")).toBe(1);
  });
});
