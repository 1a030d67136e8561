/**
 * "250 only after fsync" at the MX, seen from the kernel: the SMTP service
 * runs in its own process under strace, which records in order the queue
 * file's rename from tmp/ into msg/, the fsync of the file and of msg/ (issued
 * together, queue/durable.ts commitNew) and the socket write carrying the 250:
 * both syncs have completed before it. Both write paths of queue/durable.ts: a
 * small message (synchronous create/write/rename, the syncs on the thread
 * pool) and one over SYNC_WRITE_MAX_BYTES (all asynchronous).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SYNC_WRITE_MAX_BYTES } from "../../src/queue/durable.js";
import { makeConfig, python, startWorld, type World } from "../smtp/harness.js";

const SERVE = fileURLToPath(new URL("./fixtures/serve.ts", import.meta.url));

let world: World;
let child: ChildProcess;
let trace: string;
let mx = 0;
let queueDir: string;

beforeAll(async () => {
  world = await startWorld();
  queueDir = await mkdtemp(join(world.dir, "queue-"));
  const config = makeConfig({
    queueDir,
    lmtpPort: world.lmtp.port,
    smtp: { maxMessageBytes: 4 * 1024 * 1024 },
  });
  const file = join(world.dir, "strace-config.json");
  await writeFile(
    file,
    JSON.stringify({
      ...config,
      ldap: world.slapd.ldapConfig({ cacheTtlSeconds: 0 }),
      smtp: { ...config.smtp, relay: undefined },
    }),
  );
  trace = join(world.dir, "strace.txt");
  child = spawn(
    "strace",
    [
      "-f",
      "--seccomp-bpf",
      "-y",
      "-s",
      "64",
      "-e",
      "trace=fsync,fdatasync,rename,renameat,renameat2,write,writev,sendmsg",
      "-o",
      trace,
      process.execPath,
      "--import",
      "tsx",
      SERVE,
      file,
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  mx = await new Promise<number>((resolve, reject) => {
    let out = "";
    child.stdout?.on("data", (d: Buffer) => {
      out += d.toString();
      const m = /READY (.*)\n/.exec(out);
      if (m) resolve(Number((JSON.parse(m[1] ?? "[]") as string[])[0]?.split(":").pop()));
    });
    child.once("exit", (code) => reject(new Error(`strace/serve exited with ${code}`)));
  });
}, 60_000);

afterAll(async () => {
  if (child && child.exitCode === null) {
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    // strace's own PID: it ends the traced service with it
    if (child.pid) process.kill(child.pid, "SIGTERM");
    await exited;
  }
  await world?.stop();
}, 30_000);

/** Sends one message of about `bytes` with python's smtplib; returns the DATA reply. */
async function send(marker: string, bytes: number): Promise<string> {
  const out = await python(
    `
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]))
s.ehlo("fsync.client.test")
s.mail("sender@remote.test")
s.rcpt("alice@example.org")
body = ("x" * 76 + "\\r\\n") * (int(sys.argv[3]) // 78)
code, text = s.data(("Subject: " + sys.argv[2] + "\\r\\n\\r\\n" + body).encode())
print(code, text.decode())
s.quit()
`,
    [String(mx), marker, String(bytes)],
  );
  return out.trim();
}

interface Done {
  at: number;
  text: string;
}

/** Syscalls by the line where they completed (strace -f splits calls that block into unfinished/resumed). */
function completed(lines: string[]): Done[] {
  const open = new Map<string, string>();
  const out: Done[] = [];
  lines.forEach((line, at) => {
    const pid = line.split(" ")[0] ?? "";
    if (line.includes("<unfinished ...>")) {
      open.set(pid, line);
      return;
    }
    const resumed = /<\.\.\. \w+ resumed>/.test(line);
    const text = resumed ? `${open.get(pid) ?? ""} ${line}` : line;
    if (resumed) open.delete(pid);
    if (/= \d+$/.test(line.trim())) out.push({ at, text });
  });
  return out;
}

async function expectDurableBefore250(reply: string): Promise<void> {
  const id = /queued as (\S+)/.exec(reply)?.[1] ?? "";
  expect(id).not.toBe("");
  const calls = completed((await readFile(trace, "utf8")).split("\n"));
  const ack = calls.find((c) => /write|sendmsg/.test(c.text) && c.text.includes(`queued as ${id}`));
  expect(ack, "the 250 on the socket").toBeDefined();
  const before = calls.filter((c) => c.at < (ack as Done).at).map((c) => c.text);
  const file = before.find((t) =>
    new RegExp(`fsync\\(\\d+<[^>]*/(tmp/${id}\\.msg\\.[^>]+|msg/${id})>`).test(t),
  );
  const rename = before.find((t) =>
    new RegExp(`rename\\w*\\(.*/tmp/${id}\\.msg\\.[^"]*".*/msg/${id}"`).test(t),
  );
  const dirs = before.filter((t) => /fsync\(\d+<[^>]*\/msg>\)/.test(t));
  expect(file, "fsync of the queue file").toBeDefined();
  expect(rename, "rename tmp/ → msg/").toBeDefined();
  // The name in msg/ is on disk too: a sync of msg/ that completed after the rename (both before the 250).
  const at = (t: string | undefined) => before.indexOf(t as string);
  expect(
    dirs.some((d) => at(d) > at(rename)),
    "fsync of msg/ after the rename",
  ).toBe(true);
}

describe("MX 250 only after the queue file and msg/ are on disk", () => {
  it("a small message (synchronous write path)", async () => {
    const reply = await send("small", 2_000);
    expect(reply).toMatch(/^250 2\.0\.0 Ok: queued as /);
    await expectDurableBefore250(reply);
  });

  it("a message over SYNC_WRITE_MAX_BYTES (asynchronous write path)", async () => {
    const reply = await send("large", SYNC_WRITE_MAX_BYTES + 100_000);
    expect(reply).toMatch(/^250 2\.0\.0 Ok: queued as /);
    await expectDurableBefore250(reply);
  });
});
