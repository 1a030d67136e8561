/**
 * The whole way in on one host: swaks → MX → durable queue → the runtime's
 * own LMTP service (lmtp/) → Maildir, with recipients from the real slapd.
 */
import { mkdtemp, readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import pino from "pino";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RuntimeConfigSchema } from "../../src/config/schema.js";
import { startLmtp } from "../../src/lmtp/service.js";
import { QueueStore } from "../../src/queue/store.js";
import type { RunningService } from "../../src/service.js";
import { createMaildirStore } from "../../src/store/index.js";
import { makeConfig, type Running, startService, startWorld, swaks, type World } from "./harness.js";

let world: World;
let lmtp: RunningService;
let smtp: Running;
let root: string;

beforeAll(async () => {
  world = await startWorld();
  root = await mkdtemp(join(world.dir, "maildirs-"));
  const config = RuntimeConfigSchema.parse({
    host: { name: "store.example.org", roles: ["store"] },
    lmtp: { listen: ["127.0.0.1:0"] },
    store: { root, fsync: true },
    ldap: world.slapd.ldapConfig(),
  });
  const store = createMaildirStore({ root, fsync: true, defaultQuotaBytes: 10_000_000 });
  lmtp = await startLmtp({
    config,
    logger: pino({ level: "silent" }),
    metrics: new Registry(),
    directory: world.directory,
    store,
  });
  const port = Number(lmtp.addresses()[0]?.split(":").pop());
  const queueDir = await mkdtemp(join(world.dir, "queue-"));
  smtp = await startService(world, makeConfig({ queueDir, lmtpPort: port }));
});

afterAll(async () => {
  await smtp?.service.drain(1000);
  await lmtp?.drain(1000);
  await world?.stop();
});

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) out.push(join(entry.parentPath, entry.name));
  }
  return out;
}

async function findMessage(marker: string, timeoutMs = 15_000): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const hits: string[] = [];
    for (const f of await filesUnder(root)) {
      if (!/\/(new|cur)\//.test(f)) continue;
      if ((await readFile(f, "latin1")).includes(marker)) hits.push(f);
    }
    if (hits.length > 0) return hits;
    if (Date.now() > deadline) {
      const queue = new QueueStore(smtp.config.queue?.dir ?? "");
      const states = await Promise.all((await queue.ids()).map((id) => queue.load(id)));
      throw new Error(`${marker} not in any Maildir; queue: ${JSON.stringify(states)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe("MX to Maildir through the runtime's LMTP", () => {
  it("stores one copy per recipient in each recipient's Maildir", async () => {
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
      "alice@example.org,bob@example.org",
      "--header",
      "Subject: e2e-maildir",
    ]);
    expect(r.output).toMatch(/250 2\.0\.0 Ok: queued as/);
    await findMessage("e2e-maildir");
    await new Promise((res) => setTimeout(res, 500));
    const hits = await findMessage("e2e-maildir");
    expect(hits).toHaveLength(2);
    const text = await readFile(hits[0] ?? "", "utf8");
    expect(text).toMatch(/^Return-Path: <s@remote\.test>|Received: from client\.example\.com/m);
  });
});

describe("an SMTP listener and the LMTP server in one process", () => {
  it("LMTP keeps its own enhanced codes (the SMTP listener's reply handling is scoped to its own connections)", async () => {
    // smtp/replies.ts changes how smtp-server sends a reply carrying its own code; it must not reach LMTP's.
    const port = Number(lmtp.addresses()[0]?.split(":").pop());
    const r = await swaks([
      "--protocol",
      "LMTP",
      "--server",
      "127.0.0.1",
      "--port",
      String(port),
      "--helo",
      "mx.example.org",
      "--from",
      "s@remote.test",
      "--to",
      "nobody-here@example.org",
      "--quit-after",
      "RCPT",
    ]);
    expect(r.output).toMatch(/<\*\* 550 5\.1\.1 No such user here/);
  });
});
