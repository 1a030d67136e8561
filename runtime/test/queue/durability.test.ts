/**
 * The queue survives kill -9. The SMTP service runs in its own process;
 * messages get their 250 while the store is down, the process is killed with
 * SIGKILL, the store comes up, the service restarts: every message arrives,
 * exactly once per recipient — also when some recipients were already
 * delivered before the kill.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { QueueStore } from "../../src/queue/store.js";
import {
  freePort,
  makeConfig,
  python,
  type Sink,
  startSink,
  startWorld,
  type World,
} from "../smtp/harness.js";

const SERVE = fileURLToPath(new URL("./fixtures/serve.ts", import.meta.url));

let world: World;
const children = new Set<ChildProcess>();

beforeAll(async () => {
  world = await startWorld();
});

afterAll(async () => {
  for (const child of children) await kill9(child);
  await world?.stop();
});

async function serve(configFile: string): Promise<{ child: ChildProcess; mx: number }> {
  const child = spawn(process.execPath, ["--import", "tsx", SERVE, configFile], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(child);
  let out = "";
  let err = "";
  child.stderr?.on("data", (d: Buffer) => {
    err += d.toString();
  });
  const deadline = Date.now() + 30_000;
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.includes("\n")) resolve();
    });
    child.once("exit", (code) => reject(new Error(`serve exited ${code}: ${err}`)));
    setTimeout(() => reject(new Error(`serve did not start: ${err}`)), deadline - Date.now());
  });
  const addresses = JSON.parse(out.slice(out.indexOf(" ") + 1)) as string[];
  const mx = Number(addresses[0]?.split(":").pop());
  return { child, mx };
}

async function kill9(child: ChildProcess): Promise<void> {
  if (child.pid && child.exitCode === null && child.signalCode === null) {
    const exited = once(child, "exit");
    process.kill(child.pid, "SIGKILL");
    await exited;
  }
}

async function sendMany(port: number, messages: Array<{ to: string[]; marker: string }>): Promise<string[]> {
  const out = await python(
    `
import smtplib, sys, json
msgs = json.loads(sys.argv[2])
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]))
s.ehlo("k9.client.test")
for m in msgs:
    s.mail("sender@remote.test")
    for r in m["to"]:
        code, text = s.rcpt(r)
        assert code == 250, text
    code, text = s.data(("Subject: " + m["marker"] + "\\r\\n\\r\\nbody\\r\\n").encode())
    print(code, text.decode())
s.quit()
`,
    [String(port), JSON.stringify(messages)],
  );
  return out.trim().split("\n");
}

function count(sink: Sink, rcpt: string, marker: string): number {
  return sink.messages.filter(
    (m) => m.to.includes(rcpt) && m.data.toString().includes(`Subject: ${marker}\r\n`),
  ).length;
}

async function waitEmpty(dir: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while ((await readdir(join(dir, "msg"))).length > 0) {
    if (Date.now() > deadline) throw new Error("queue not empty");
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function configFile(queueDir: string, lmtpPort: number): Promise<string> {
  const config = makeConfig({ queueDir, lmtpPort });
  const json = {
    ...config,
    ldap: world.slapd.ldapConfig({ cacheTtlSeconds: 0 }),
    smtp: { ...config.smtp, relay: undefined },
  };
  const file = join(queueDir, "..", `config-${lmtpPort}.json`);
  await writeFile(file, JSON.stringify(json));
  return file;
}

describe("kill -9", () => {
  it("delivers every acknowledged message after a restart, exactly once per recipient", async () => {
    const queueDir = await mkdtemp(join(world.dir, "queue-k9-"));
    const lmtpPort = await freePort(); // nothing listens yet: the store is down
    const file = await configFile(queueDir, lmtpPort);
    const first = await serve(file);
    const messages = Array.from({ length: 20 }, (_, i) => ({
      to: i % 2 ? ["alice@example.org", "bob@example.org"] : ["alice@example.org"],
      marker: `k9-${i}`,
    }));
    const replies = await sendMany(first.mx, messages);
    expect(replies).toHaveLength(20);
    for (const r of replies) expect(r).toMatch(/^250 2\.0\.0 Ok: queued as /);
    await kill9(first.child);

    // what was acknowledged is on disk
    const store = new QueueStore(queueDir);
    expect((await store.ids()).length).toBe(20);

    const sink = await startSink({ lmtp: true, port: lmtpPort });
    try {
      const second = await serve(file);
      await waitEmpty(queueDir);
      for (const [i, m] of messages.entries()) {
        expect(count(sink, "alice@example.org", m.marker)).toBe(1);
        expect(count(sink, "bob@example.org", m.marker)).toBe(i % 2 ? 1 : 0);
      }
      await kill9(second.child);
    } finally {
      await sink.close();
    }
  });

  it("does not deliver again to a recipient that was done before the kill", async () => {
    const queueDir = await mkdtemp(join(world.dir, "queue-k9b-"));
    const sink = await startSink({ lmtp: true });
    sink.replies.set("bob@example.org", { code: 451, text: "4.3.0 try later" });
    const file = await configFile(queueDir, sink.port);
    try {
      const first = await serve(file);
      const [reply] = await sendMany(first.mx, [
        { to: ["alice@example.org", "bob@example.org"], marker: "k9-partial" },
      ]);
      const id = reply?.match(/queued as (\S+)/)?.[1] ?? "";
      // wait until alice's delivery is recorded on disk, then kill
      const store = new QueueStore(queueDir);
      const deadline = Date.now() + 10_000;
      while (
        (await store.load(id))?.recipients.find((r) => r.address === "alice@example.org")?.status !==
        "delivered"
      ) {
        if (Date.now() > deadline) throw new Error("alice never recorded as delivered");
        await new Promise((r) => setTimeout(r, 20));
      }
      await kill9(first.child);
      expect(count(sink, "alice@example.org", "k9-partial")).toBe(1);
      expect(count(sink, "bob@example.org", "k9-partial")).toBe(0);

      sink.replies.delete("bob@example.org");
      const second = await serve(file);
      await waitEmpty(queueDir);
      expect(count(sink, "alice@example.org", "k9-partial")).toBe(1);
      expect(count(sink, "bob@example.org", "k9-partial")).toBe(1);
      await kill9(second.child);
    } finally {
      await sink.close();
    }
  });
});
