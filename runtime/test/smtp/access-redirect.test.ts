/**
 * access(5) REDIRECT and BCC from the client, HELO, sender and recipient
 * access maps, end to end: swaks sends to the MX, and the LMTP stores get the
 * message for the redirect target only (REDIRECT replaces every recipient) or
 * for the recipients plus the BCC address (dave lives on the second store). A
 * REDIRECT to an address that is not one stops the start, naming file:line.
 */
import { mkdtemp, writeFile } from "node:fs/promises";
import { join } from "node:path";
import pino from "pino";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openSmtpQueue } from "../../src/smtp/service.js";
import type { Sink } from "./harness.js";
import { makeConfig, type Running, startService, startWorld, swaks, type World } from "./harness.js";

let world: World;
let smtp: Running;
let maps: Record<string, string>;

const FILTER = {
  dnsServers: ["127.0.0.1:9"],
  rate: { maxConnectionsPerMinute: 0, maxConcurrent: 0 },
  helo: { enabled: false },
  spf: { enabled: false },
  dkim: { enabled: false },
  dmarc: { enabled: false },
  arc: { enabled: false },
};

beforeAll(async () => {
  world = await startWorld();
  const file = async (name: string, lines: string[]) => {
    const path = join(world.dir, name);
    await writeFile(path, `${lines.join("\n")}\n`);
    return path;
  };
  maps = {
    clientAccess: `hash:${await file("client_access", ["127.0.0.3   REDIRECT bob@example.org"])}`,
    heloAccess: `hash:${await file("helo_access", ["bcc.helo.test   BCC dave@example.org"])}`,
    senderAccess: `regexp:${await file("sender_access", [
      "/^redirect-me@remote\\.test$/   REDIRECT bob@example.org",
      "/^bcc-me@remote\\.test$/        BCC Dave@Example.org",
    ])}`,
    recipientAccess: `hash:${await file("recipient_access", ["a.liddell@example.org   REDIRECT bob@example.org"])}`,
  };
  smtp = await startService(
    world,
    makeConfig({
      queueDir: await mkdtemp(join(world.dir, "queue-")),
      lmtpPort: world.lmtp.port,
      filter: { ...FILTER, ...maps },
    }),
  );
});

afterAll(async () => {
  await smtp?.service.drain(1000);
  await world?.stop();
});

async function send(
  subject: string,
  options: { from?: string; to?: string; helo?: string; bind?: string } = {},
) {
  const r = await swaks([
    "--server",
    "127.0.0.1",
    "--port",
    String(smtp.mx),
    ...(options.bind ? ["--local-interface", options.bind] : []),
    "--helo",
    options.helo ?? "client.example.com",
    "--from",
    options.from ?? "s@remote.test",
    "--to",
    options.to ?? "alice@example.org",
    "--header",
    `Subject: ${subject}`,
  ]);
  expect(r.output).toMatch(/<- {2}250 2\.0\.0 Ok: queued as/);
}

/** Every LMTP transaction of the store that carried `subject`, by recipient list. */
async function deliveredTo(sink: Sink, subject: string, count = 1): Promise<string[][]> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const got = sink.messages.filter((m) => m.data.toString().includes(`Subject: ${subject}`));
    if (got.length >= count) return got.map((m) => [...m.to].sort());
    if (Date.now() > deadline) throw new Error(`"${subject}": ${got.length} of ${count} deliveries`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Nothing more arrives for `subject` meanwhile (a copy to the replaced recipient would by now). */
async function settle(): Promise<void> {
  await new Promise((r) => setTimeout(r, 500));
}

describe("REDIRECT and BCC from access maps reach the target's store", () => {
  it("sender map REDIRECT: only bob gets it, alice nothing", async () => {
    await send("sender redirect", { from: "redirect-me@remote.test" });
    expect(await deliveredTo(world.lmtp, "sender redirect")).toEqual([["bob@example.org"]]);
    await settle();
    expect(await deliveredTo(world.lmtp, "sender redirect")).toEqual([["bob@example.org"]]);
    expect(await deliveredTo(world.lmtp2, "sender redirect", 0)).toEqual([]);
  });

  it("sender map BCC: alice gets it and dave (second store) a copy", async () => {
    await send("sender bcc", { from: "bcc-me@remote.test" });
    expect(await deliveredTo(world.lmtp, "sender bcc")).toEqual([["alice@example.org"]]);
    expect(await deliveredTo(world.lmtp2, "sender bcc")).toEqual([["dave@example.org"]]);
  });

  it("recipient map REDIRECT (an alias of alice): bob instead", async () => {
    await send("recipient redirect", { to: "A.Liddell@example.org" });
    expect(await deliveredTo(world.lmtp, "recipient redirect")).toEqual([["bob@example.org"]]);
    await settle();
    expect(await deliveredTo(world.lmtp, "recipient redirect")).toHaveLength(1);
  });

  it("client map REDIRECT by address: a client on 127.0.0.3 reaches bob, the same mail from 127.0.0.1 alice", async () => {
    await send("client redirect", { bind: "127.0.0.3" });
    await send("client plain", { bind: "127.0.0.1" });
    expect(await deliveredTo(world.lmtp, "client redirect")).toEqual([["bob@example.org"]]);
    expect(await deliveredTo(world.lmtp, "client plain")).toEqual([["alice@example.org"]]);
  });

  it("HELO map BCC: dave gets a copy", async () => {
    await send("helo bcc", { helo: "mx.bcc.helo.test" });
    expect(await deliveredTo(world.lmtp, "helo bcc")).toEqual([["alice@example.org"]]);
    expect(await deliveredTo(world.lmtp2, "helo bcc")).toEqual([["dave@example.org"]]);
  });
});

describe("a malformed address in an access map", () => {
  it("stops the start with file:line", async () => {
    const bad = join(world.dir, "bad_sender_access");
    await writeFile(bad, "ok@remote.test OK\nspam@remote.test REDIRECT quarantine\n");
    const config = makeConfig({
      queueDir: await mkdtemp(join(world.dir, "queue-")),
      lmtpPort: world.lmtp.port,
      filter: { ...FILTER, senderAccess: `hash:${bad}` },
    });
    await expect(startService(world, config)).rejects.toThrow(
      `${bad}:2: REDIRECT needs user@domain (access(5)), got "quarantine"`,
    );
    // The cluster primary opens the queue without a pipeline (its acceptors build one): it checks the maps too.
    const ctx = {
      config,
      logger: pino({ level: "silent" }),
      metrics: new Registry(),
      directory: world.directory,
    };
    await expect(openSmtpQueue(ctx)).rejects.toThrow(`${bad}:2: REDIRECT needs user@domain`);
  });
});
