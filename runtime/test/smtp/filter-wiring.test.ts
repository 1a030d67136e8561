/**
 * The SMTP server applies filter/'s verdicts: reject → 5xx, HELO refused at
 * MAIL, PREPEND and X-Spam-* headers added (a sender's forged X-Spam-Flag
 * removed), DISCARD answered 250 and dropped, HOLD kept in the queue until
 * `queue release`; every verdict logged as a structured object.
 */
import { mkdtemp, writeFile } from "node:fs/promises";
import { join } from "node:path";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runQueueCommand } from "../../src/queue/cli.js";
import { QueueStore } from "../../src/queue/store.js";
import { jsonSink } from "../support/log-sink.js";
import { makeConfig, python, type Running, startService, startWorld, swaks, type World } from "./harness.js";

let world: World;
let smtp: Running;
let queueDir: string;
const logs: Array<Record<string, unknown>> = [];

beforeAll(async () => {
  world = await startWorld();
  queueDir = await mkdtemp(join(world.dir, "queue-"));
  const maps = join(world.dir, "header_checks");
  await writeFile(
    maps,
    [
      "/^Subject:.*cheap pills/   REJECT 5.7.1 Spam subject",
      "/^Subject:.*tag-me/        PREPEND X-Tagged: by-header-checks",
      "/^Subject:.*throw-away/    DISCARD",
      "/^Subject:.*hold-me/       HOLD",
      "/^Subject:.*redirect-me/   REDIRECT bob@example.org",
      "/^Subject:.*bcc-me/        BCC dave@example.org",
      "/^X-Drop-Me:/              IGNORE",
      "/^X-Old-Name: (.*)/        REPLACE X-New-Name: $1",
      "",
    ].join("\n"),
  );
  const sink = jsonSink(logs);
  smtp = await startService(
    world,
    makeConfig({
      queueDir,
      lmtpPort: world.lmtp.port,
      filter: {
        dnsServers: ["127.0.0.1:9"],
        rate: { maxConnectionsPerMinute: 0, maxConcurrent: 0 },
        spf: { enabled: false },
        dkim: { enabled: false },
        dmarc: { enabled: false },
        arc: { enabled: false },
        headerChecks: `regexp:${maps}`,
      },
    }),
    {},
    pino({ level: "info" }, sink),
  );
});

afterAll(async () => {
  await smtp?.service.drain(1000);
  await world?.stop();
});

const mx = (subject: string, extra: string[] = []) =>
  swaks([
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
    `Subject: ${subject}`,
    ...extra,
  ]);

const delivered = (marker: string) => world.lmtp.messages.find((m) => m.data.toString().includes(marker));

async function waitDelivered(marker: string) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const m = delivered(marker);
    if (m) return m;
    if (Date.now() > deadline) throw new Error(`${marker} not delivered`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("verdicts at the SMTP edge", () => {
  it("rejects at DATA what header_checks rejects, and logs the verdict", async () => {
    const r = await mx("cheap pills here");
    expect(r.output).toMatch(/<\*\* 550 5\.7\.1 Spam subject/);
    const record = logs.find((l) => l.msg === "filter verdict" && l.stage === "data");
    expect(record).toBeDefined();
    expect(JSON.stringify(record?.verdict)).toContain("header-checks");
  });

  it("refuses a non-FQDN HELO (the filter's helo stage runs at MAIL FROM)", async () => {
    const r = await swaks([
      "--server",
      "127.0.0.1",
      "--port",
      String(smtp.mx),
      "--helo",
      "vm",
      "--to",
      "alice@example.org",
    ]);
    expect(r.output).toMatch(/-> MAIL FROM[^\n]*\n<\*\* 5\d\d /);
  });

  it("adds PREPEND and X-Spam-* headers, removing a forged X-Spam-Flag, and logs the record", async () => {
    const r = await mx("tag-me please", ["--add-header", "X-Spam-Flag: YES"]);
    expect(r.output).toMatch(/250 2\.0\.0 Ok: queued as/);
    const text = (await waitDelivered("tag-me please")).data.toString();
    expect(text).toContain("X-Tagged: by-header-checks");
    expect(text).toMatch(/^X-Spam-Status: No, score=/m);
    expect(text).not.toMatch(/^X-Spam-Flag:/m);
    // trace header first
    expect(text.indexOf("Received:")).toBe(0);
    const queued = logs.find(
      (l) => l.msg === "queued" && JSON.stringify(l.verdict).includes("header-checks"),
    );
    expect(queued?.from).toBe("s@remote.test");
    expect(queued?.rcpt).toEqual(["alice@example.org"]);
  });

  it("answers 250 to DISCARD and delivers nothing", async () => {
    const r = await mx("throw-away now");
    expect(r.output).toMatch(/250 2\.0\.0 Ok: queued as/);
    await new Promise((res) => setTimeout(res, 800));
    expect(delivered("throw-away now")).toBeUndefined();
    expect(logs.some((l) => l.msg === "discarded by policy")).toBe(true);
  });

  it("keeps a HOLD message in the queue until `queue release`", async () => {
    const r = await mx("hold-me please");
    const id = r.output.match(/queued as (\S+)/)?.[1] ?? "";
    await new Promise((res) => setTimeout(res, 800));
    expect(delivered("hold-me please")).toBeUndefined();
    const lines: string[] = [];
    const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l) };
    expect(await runQueueCommand(queueDir, ["list"], io)).toBe(0);
    expect(lines.join("\n")).toContain(`${id} HOLD`);
    expect((await new QueueStore(queueDir).load(id))?.hold).toBe(true);
    expect(await runQueueCommand(queueDir, ["release", id], io)).toBe(0);
    await waitDelivered("hold-me please");
  });

  it("REDIRECT delivers to the map's address only; BCC adds a copy", async () => {
    expect((await mx("redirect-me now")).output).toMatch(/250 2\.0\.0 Ok: queued as/);
    const redirected = await waitDelivered("redirect-me now");
    expect(redirected.to).toEqual(["bob@example.org"]);
    expect((await mx("bcc-me too")).output).toMatch(/250 2\.0\.0 Ok: queued as/);
    // The BCC recipient is routed at delivery like any other: dave lives on the second store (mailHost).
    await waitDelivered("bcc-me too");
    const deadline = Date.now() + 10_000;
    while (!world.lmtp2.messages.some((m) => m.data.toString().includes("bcc-me too"))) {
      if (Date.now() > deadline) throw new Error("no BCC copy on dave's store");
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(delivered("bcc-me too")?.to).toEqual(["alice@example.org"]);
    expect(world.lmtp2.messages.find((m) => m.data.toString().includes("bcc-me too"))?.to).toEqual([
      "dave@example.org",
    ]);
  });

  it("IGNORE removes a header and REPLACE rewrites one, in place", async () => {
    await mx("edited headers", ["--add-header", "X-Drop-Me: 1", "--add-header", "X-Old-Name: kept value"]);
    const text = (await waitDelivered("edited headers")).data.toString();
    expect(text).not.toMatch(/^X-Drop-Me:/m);
    expect(text).not.toMatch(/^X-Old-Name:/m);
    expect(text).toMatch(/^X-New-Name: kept value\r$/m);
  });

  it("python smtplib sees the same 550 for a rejected message", async () => {
    const out = await python(
      `
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), local_hostname="client.example.com")
try:
    s.sendmail("s@remote.test", ["alice@example.org"], b"Subject: cheap pills\\r\\n\\r\\nx\\r\\n")
except smtplib.SMTPDataError as e:
    print(e.smtp_code, e.smtp_error.decode())
`,
      [String(smtp.mx)],
    );
    expect(out.trim()).toBe("550 5.7.1 Spam subject");
  });
});
