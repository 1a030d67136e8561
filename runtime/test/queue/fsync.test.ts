/**
 * "Nothing lost" for the MX (queue/store.ts, queue/durable.ts commitNew): the
 * 250 after DATA goes out only once the queue file — the envelope line, then
 * the message — is written under tmp/, renamed into msg/, and both the file
 * and msg/ are fsynced (syncs begun after the rename, returned before the
 * 250; a crash before that leaves a short file that QueueStore.open()
 * removes, unit.test.ts). kill -9 keeps the page cache, so only the syscalls
 * can show this: the service runs in its own process under strace, which
 * records in order (-f all threads, -y descriptors with their paths) the
 * writes, fsyncs, renames and the socket write that carries the 250. Both
 * write paths: a small message (synchronous write and rename, the syncs on
 * the thread pool) and one over SYNC_WRITE_MAX_BYTES (all asynchronous).
 */
import { mkdtemp, readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SYNC_WRITE_MAX_BYTES } from "../../src/queue/durable.js";
import { python, startWorld, type World } from "../smtp/harness.js";
import { type ServeChild, serveChild, writeConfig } from "./serve-child.js";

let world: World;
let served: ServeChild;
let trace: string;

beforeAll(async () => {
  world = await startWorld();
  const queueDir = await mkdtemp(join(world.dir, "queue-fsync-"));
  trace = join(world.dir, "strace.txt");
  const config = await writeConfig(world, queueDir, world.lmtp.port);
  served = await serveChild(config, {
    args: [
      "-f",
      "--seccomp-bpf",
      "-y",
      "-s",
      "64",
      "-e",
      "trace=fsync,fdatasync,rename,renameat,renameat2,write,writev,pwrite64,pwritev,sendmsg,sendto",
    ],
    output: trace,
  });
}, 60_000);

afterAll(async () => {
  await served?.stop();
  await world?.stop();
});

interface Call {
  /** Line where the call started and where it returned (strace -f splits calls that block). */
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

/** Sends one message of about `bytes` with Python's smtplib; returns the DATA reply. */
async function send(marker: string, bytes: number): Promise<string> {
  const out = await python(
    `
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]))
s.ehlo("fsync.client.test")
s.mail("sender@remote.test")
s.rcpt("alice@example.org")
body = ("x" * 76 + "\\r\\n") * (int(sys.argv[3]) // 78)
code, msg = s.data(("Subject: " + sys.argv[2] + "\\r\\n\\r\\n" + body).encode())
print(code, msg.decode())
s.quit()
`,
    [String(served.mx), marker, String(bytes)],
  );
  return out.trim();
}

async function expectDurableBefore250(reply: string): Promise<void> {
  const id = reply.match(/^250 2\.0\.0 Ok: queued as (\S+)/)?.[1];
  expect(id, reply).toBeDefined();
  const all = calls((await readFile(trace, "utf8")).split("\n"));
  const sent = all.find((c) => /write|send/.test(c.text) && c.text.includes(`queued as ${id}`));
  expect(sent, "the 250 on the socket").toBeDefined();
  const before = all.filter((c) => c.end < (sent as Call).start);
  const tmpFile = new RegExp(`<[^>]*/tmp/${id}\\.msg\\.[^>]*>`);
  // the same file, by its name before or after the rename
  const queueFile = new RegExp(`<[^>]*/(tmp/${id}\\.msg\\.[^>]*|msg/${id})>`);
  const written = before.find((c) => /write/.test(c.text) && tmpFile.test(c.text));
  const renamed = before.find(
    (c) => /rename/.test(c.text) && c.text.includes(`/tmp/${id}.msg.`) && c.text.includes(`/msg/${id}"`),
  );
  expect(written, "the queue file is written").toBeDefined();
  // it starts with the envelope (sender, recipients, DSN requests) as one JSON line
  expect(written?.text).toContain(`{\\"version\\":1,\\"id\\":\\"${id}\\"`);
  expect(renamed, "rename tmp/ → msg/").toBeDefined();
  const r = renamed as Call;
  expect((written as Call).end).toBeLessThan(r.start);
  // Syncs begun after the rename (one begun earlier may not cover it) and returned before the 250.
  const fileSync = before.find(
    (c) => /f(data)?sync\(/.test(c.text) && queueFile.test(c.text) && c.start > r.end,
  );
  const dirSync = before.find((c) => /f(data)?sync\(\d+<[^>]*\/msg>/.test(c.text) && c.start > r.end);
  expect(fileSync, "fsync of the queue file, returned before the 250").toBeDefined();
  expect(dirSync, "fsync of msg/, returned before the 250").toBeDefined();
}

describe("MX 250 only after the queue file and msg/ are on disk (strace)", () => {
  it("a small message (synchronous write and rename, the syncs on the thread pool)", async () => {
    await expectDurableBefore250(await send("fsync-small", 2_000));
  });

  it("a message over SYNC_WRITE_MAX_BYTES (asynchronous write path)", async () => {
    await expectDurableBefore250(await send("fsync-large", SYNC_WRITE_MAX_BYTES + 100_000));
  });
});
