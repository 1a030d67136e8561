/**
 * "250 only after fsync" for a message over SYNC_WRITE_MAX_BYTES, the queue's
 * asynchronous write path (queue/durable.ts commitNewLarge; fsync.test.ts
 * proves the same for the small, synchronous one): the SMTP service runs in
 * its own process under strace, which records the rename of the queue file
 * from tmp/ into msg/, the fsync of the file and of msg/ (issued together
 * after the rename) and the socket write carrying the 250, after both.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SYNC_WRITE_MAX_BYTES } from "../../src/queue/durable.js";
import { makeConfig, python, startWorld, type World } from "../smtp/harness.js";

const run = promisify(execFile);
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
    // The traced service by its PID (strace's only child): strace ends with it.
    const { stdout } = await run("pgrep", ["-P", String(child.pid)]).catch(() => ({ stdout: "" }));
    const served = Number(stdout.trim().split("\n")[0]);
    if (served > 0) process.kill(served, "SIGTERM");
    else if (child.pid) process.kill(child.pid, "SIGKILL");
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

interface Call {
  /** Lines where the call started and returned (strace -f splits calls that block). */
  start: number;
  end: number;
  text: string;
}

function calls(lines: string[]): Call[] {
  const open = new Map<string, { line: string; at: number }>();
  const out: Call[] = [];
  lines.forEach((line, at) => {
    const pid = line.split(" ")[0] ?? "";
    if (line.includes("<unfinished ...>")) {
      open.set(pid, { line, at });
      return;
    }
    const resumed = /<\.\.\. \w+ resumed>/.test(line);
    const begun = resumed ? open.get(pid) : undefined;
    if (resumed) open.delete(pid);
    if (/= \d+$/.test(line.trim()))
      out.push({ start: begun?.at ?? at, end: at, text: begun ? `${begun.line} ${line}` : line });
  });
  return out;
}

async function expectDurableBefore250(reply: string): Promise<void> {
  const id = /queued as (\S+)/.exec(reply)?.[1] ?? "";
  expect(id).not.toBe("");
  const all = calls((await readFile(trace, "utf8")).split("\n"));
  const ack = all.find((c) => /write|sendmsg/.test(c.text) && c.text.includes(`queued as ${id}`));
  expect(ack, "the 250 on the socket").toBeDefined();
  const before = all.filter((c) => c.end < (ack as Call).start);
  const renamed = before.find((c) =>
    new RegExp(`rename\\w*\\(.*/tmp/${id}\\.msg\\.[^"]*".*/msg/${id}"`).test(c.text),
  );
  expect(renamed, "rename tmp/ → msg/").toBeDefined();
  const r = renamed as Call;
  // Both syncs begun after the rename (one begun earlier may not cover it) and returned before the 250.
  const file = before.find(
    (c) =>
      new RegExp(`fsync\\(\\d+<[^>]*/(tmp/${id}\\.msg\\.[^>]+|msg/${id})>`).test(c.text) && c.start > r.end,
  );
  const dir = before.find((c) => /fsync\(\d+<[^>]*\/msg>/.test(c.text) && c.start > r.end);
  expect(file, "fsync of the queue file").toBeDefined();
  expect(dir, "fsync of msg/").toBeDefined();
}

describe("MX 250 only after the queue file and msg/ are on disk", () => {
  it("a message over SYNC_WRITE_MAX_BYTES (asynchronous write path)", async () => {
    const reply = await send("large", SYNC_WRITE_MAX_BYTES + 100_000);
    expect(reply).toMatch(/^250 2\.0\.0 Ok: queued as /);
    await expectDurableBefore250(reply);
  });
});
