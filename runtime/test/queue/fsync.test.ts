/**
 * "Nothing lost" for the MX (queue/store.ts, queue/durable.ts): the 250 after
 * DATA goes out only once the queue file — the envelope line, then the
 * message — is fsynced, renamed from tmp/ into msg/, and msg/ itself is
 * fsynced after that rename. kill -9 keeps the page cache, so only the
 * syscalls can show this: the service runs in its own process under strace,
 * which records in order (-f all threads, -y descriptors with their paths)
 * the writes, fsyncs, renames and the socket write that carries the 250.
 */
import { mkdtemp, readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
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

describe("MX 250 only after fsync (strace)", () => {
  it("fsyncs the queue file (envelope and message) and msg/ after the rename, before the 250", async () => {
    const reply = await python(
      `
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]))
s.ehlo("fsync.client.test")
s.mail("sender@remote.test")
s.rcpt("alice@example.org")
code, msg = s.data(b"Subject: fsync-me\\r\\n\\r\\nkeep me\\r\\n")
print(code, msg.decode())
s.quit()
`,
      [String(served.mx)],
    );
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
    const fileSync = before.find((c) => /f(data)?sync\(/.test(c.text) && queueFile.test(c.text));
    const renamed = before.find(
      (c) => /rename/.test(c.text) && c.text.includes(`/tmp/${id}.msg.`) && c.text.includes(`/msg/${id}"`),
    );
    expect(written, "the queue file is written").toBeDefined();
    // it starts with the envelope (sender, recipients, DSN requests) as one JSON line
    expect(written?.text).toContain(`{\\"version\\":1,\\"id\\":\\"${id}\\"`);
    expect(fileSync, "fsync of the queue file, returned before the 250").toBeDefined();
    expect((written as Call).end).toBeLessThan((fileSync as Call).start);
    expect(renamed, "rename tmp/ → msg/").toBeDefined();
    // a msg/ fsync that began after the rename returned: one begun earlier may not cover it
    const r = renamed as Call;
    const dirSync = before.find((c) => /f(data)?sync\(\d+<[^>]*\/msg>/.test(c.text) && c.start > r.end);
    expect(dirSync, "fsync of msg/ begun after the rename, returned before the 250").toBeDefined();
  });
});
