/**
 * The service as `mailinfra serve imap` starts it (runtime.yaml parsed by the
 * schema, start() from service.ts) with accounts in a real slapd: LDAP
 * logins by uid and by address, quota from the directory's mailQuotaBytes,
 * wrong passwords, and a directory that stops answering.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RuntimeConfigSchema } from "../../src/config/schema.js";
import { createDirectory } from "../../src/directory/index.js";
import type { Directory } from "../../src/directory/types.js";
import { start } from "../../src/imap/service.js";
import type { RunningService } from "../../src/service.js";
import { createMaildirStore } from "../../src/store/index.js";
import type { MailStore } from "../../src/store/types.js";
import { type Slapd, startSlapd, TEST_ACCOUNTS } from "../support/slapd.js";
import { Transcript } from "./support.js";

let ldap: Slapd;
let directory: Directory;
let store: MailStore;
let service: RunningService;
let root: string;
let port: number;

beforeAll(async () => {
  ldap = await startSlapd();
  root = await mkdtemp(join(tmpdir(), "imap-ldap-"));
  const config = RuntimeConfigSchema.parse({
    host: { name: "store1", roles: ["store"] },
    ldap: ldap.ldapConfig({ timeoutMs: 1000, cacheTtlSeconds: 0 }),
    store: { root, fsync: true },
    // one process (several: workers.test.ts)
    imap: { listen: ["127.0.0.1:0"], authFailureDelayMs: 10, workers: 1 },
  });
  directory = createDirectory(config.ldap!);
  store = createMaildirStore({ root, fsync: true, defaultQuotaBytes: config.store!.defaultQuotaBytes });
  service = await start({
    config,
    logger: pino({ level: "silent" }),
    metrics: new Registry(),
    directory,
    store,
  });
  port = Number(service.addresses()[0]!.split(":").pop());
});

afterAll(async () => {
  await service?.drain(1000);
  await directory?.close();
  await store?.close();
  await ldap?.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

const alice = TEST_ACCOUNTS.find((a) => a.uid === "alice")!;
const bob = TEST_ACCOUNTS.find((a) => a.uid === "bob")!;

describe("IMAP logins against slapd", () => {
  it("logs in by uid and by address; quota comes from mailQuotaBytes", async () => {
    const t = await Transcript.connect(port);
    expect(await t.cmd("a", `LOGIN alice "${alice.password}"`)).toMatch(/a OK/);
    expect(await t.cmd("q", "GETQUOTAROOT INBOX")).toMatch(
      new RegExp(`\\* QUOTA "" \\(STORAGE 0 ${Math.floor(alice.quotaBytes! / 1024)}\\)`),
    );
    t.close();
    const u = await Transcript.connect(port);
    const plain = Buffer.from(`\0${bob.mail}\0${bob.password}`).toString("base64");
    expect(await u.cmd("b", `AUTHENTICATE PLAIN ${plain}`)).toMatch(/b OK/);
    expect(await u.cmd("s", "SELECT INBOX")).toMatch(/s OK \[READ-WRITE\]/);
    u.close();
  });

  it("refuses a wrong password and an unknown user alike", async () => {
    const t = await Transcript.connect(port);
    expect(await t.cmd("a", "LOGIN alice wrong-password")).toMatch(/a NO \[AUTHENTICATIONFAILED\]/);
    expect(await t.cmd("b", "LOGIN nobody whatever")).toMatch(/b NO \[AUTHENTICATIONFAILED\]/);
    t.close();
  });

  it("answers [UNAVAILABLE] when the directory does not answer, and recovers", async () => {
    await ldap.halt();
    try {
      const t = await Transcript.connect(port);
      expect(await t.cmd("a", `LOGIN alice "${alice.password}"`, 10_000)).toMatch(/a NO \[UNAVAILABLE\]/);
      t.close();
    } finally {
      await ldap.resume();
    }
    // the failed server is held down for a while (directory/ldap.ts SERVER_HOLD_DOWN_MS)
    const deadline = Date.now() + 20_000;
    for (;;) {
      const t = await Transcript.connect(port);
      const out = await t.cmd("a", `LOGIN alice "${alice.password}"`, 10_000);
      t.close();
      if (/a OK/.test(out)) break;
      if (Date.now() > deadline) throw new Error(`no recovery: ${out}`);
      await new Promise((r) => setTimeout(r, 500));
    }
  });

  it("reports healthy and drains", async () => {
    expect(await service.healthy()).toBe(true);
  });
});
