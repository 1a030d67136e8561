/**
 * LMTP deliveries per second with fsync: our `lmtp` service (bench/lmtp-server.ts,
 * its own process, Maildir store with fsync) side by side with Debian's Dovecot
 * LMTP (dovecot-lmtpd, started here on a loopback port with a temp config:
 * static userdb, Maildir, mail_fsync = always). Same load generator for both:
 * CONCURRENCY connections, each delivering messages of SIZE bytes to one
 * recipient out of USERS, MESSAGES in all.
 *
 *   npx tsx bench/lmtp.ts            (env: CONCURRENCY MESSAGES USERS SIZE)
 */
import { spawn } from "node:child_process";
import { mkdir, mkdtemp, readdir, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startDovecot } from "../runtime/test/support/dovecot.js";
import { stopChild } from "../runtime/test/support/process.js";

const CONCURRENCY = Number(process.env.CONCURRENCY ?? 16);
const MESSAGES = Number(process.env.MESSAGES ?? 3000);
const USERS = Number(process.env.USERS ?? 50);
const SIZE = Number(process.env.SIZE ?? 4096);

function message(i: number): string {
  const header = `From: bench@sender.example\r\nTo: someone@bench.example\r\nSubject: bench ${i}\r\nMessage-ID: <${i}.${Date.now()}@sender.example>\r\n\r\n`;
  const line = `${"lorem ipsum dolor sit amet ".repeat(3).slice(0, 76)}\r\n`;
  return header + line.repeat(Math.max(1, Math.ceil((SIZE - header.length) / line.length)));
}

/** A minimal LMTP client: one transaction at a time per connection. */
class Client {
  private buffer = "";
  private waiting: ((line: string) => void) | null = null;
  private lines: string[] = [];
  private socket!: net.Socket;

  async connect(port: number): Promise<void> {
    this.socket = net.connect(port, "127.0.0.1");
    this.socket.setNoDelay(true);
    this.socket.on("data", (d) => {
      this.buffer += d.toString("latin1");
      let i = this.buffer.indexOf("\r\n");
      while (i >= 0) {
        const line = this.buffer.slice(0, i);
        this.buffer = this.buffer.slice(i + 2);
        if (this.waiting) {
          const w = this.waiting;
          this.waiting = null;
          w(line);
        } else this.lines.push(line);
        i = this.buffer.indexOf("\r\n");
      }
    });
    await this.reply();
    this.socket.write("LHLO bench.client\r\n");
    await this.reply();
  }

  private line(): Promise<string> {
    const l = this.lines.shift();
    if (l !== undefined) return Promise.resolve(l);
    return new Promise((resolve) => {
      this.waiting = resolve;
    });
  }

  /** A whole (possibly multi-line) reply; returns the last line. */
  private async reply(): Promise<string> {
    for (;;) {
      const l = await this.line();
      if (l[3] !== "-") return l;
    }
  }

  async deliver(rcpt: string, body: string): Promise<boolean> {
    this.socket.write("MAIL FROM:<bench@sender.example>\r\n");
    await this.reply();
    this.socket.write(`RCPT TO:<${rcpt}>\r\n`);
    const r = await this.reply();
    if (!r.startsWith("250")) throw new Error(`RCPT refused: ${r}`);
    this.socket.write("DATA\r\n");
    await this.reply();
    this.socket.write(`${body}.\r\n`);
    const d = await this.reply();
    return d.startsWith("250");
  }

  close(): void {
    this.socket.end("QUIT\r\n");
  }
}

async function load(port: number, users: (i: number) => string): Promise<{ perSecond: number; ok: number }> {
  const bodies = Array.from({ length: 16 }, (_, i) => message(i));
  let next = 0;
  let ok = 0;
  const started = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      const c = new Client();
      await c.connect(port);
      for (;;) {
        const i = next++;
        if (i >= MESSAGES) break;
        if (await c.deliver(users(i % USERS), bodies[i % bodies.length] as string)) ok++;
      }
      c.close();
    }),
  );
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return { perSecond: ok / seconds, ok };
}

async function countFiles(dir: string): Promise<number> {
  let n = 0;
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile() && /\/(new|cur)$/.test(entry.parentPath)) n++;
  }
  return n;
}

async function ours(dir: string): Promise<{ perSecond: number; ok: number; stored: number }> {
  const root = join(dir, "ours");
  await mkdir(root);
  const profile = process.env.CPU_PROF ? ["--cpu-prof", `--cpu-prof-dir=${process.env.CPU_PROF}`] : [];
  const child = spawn(
    process.execPath,
    [...profile, "--import", "tsx", join(import.meta.dirname, "lmtp-server.ts"), root],
    {
      stdio: ["ignore", "pipe", "inherit"],
      // fsync runs on libuv's pool: its default 4 threads would cap parallel deliveries
      env: { ...process.env, UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE ?? "64" },
    },
  );
  try {
    const port = await new Promise<number>((resolve, reject) => {
      let out = "";
      child.stdout?.on("data", (d: Buffer) => {
        out += d.toString();
        const m = /port (\d+)/.exec(out);
        if (m) resolve(Number(m[1]));
      });
      child.once("exit", (code) => reject(new Error(`lmtp-server exited ${code}`)));
    });
    const r = await load(port, (u) => `user${u}@bench.example`);
    return { ...r, stored: await countFiles(root) };
  } finally {
    await stopChild(child);
  }
}

async function dovecot(): Promise<{ perSecond: number; ok: number; stored: number }> {
  const server = await startDovecot({ protocol: "lmtp", fsync: "always" });
  try {
    const r = await load(server.port, (u) => `user${u}@bench.example`);
    return { ...r, stored: await countFiles(join(server.dir, "mail")) };
  } finally {
    await server.stop();
  }
}

const ROUNDS = Number(process.env.ROUNDS ?? 3);
const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)] as number;

// Rounds alternate between the two servers so that load from anything else on
// the machine hits both alike; the medians are compared.
const dir = await mkdtemp(join(tmpdir(), "bench-lmtp-"));
try {
  if (process.env.ONLY_OURS) {
    const a = await ours(dir);
    console.log(`mailinfra lmtp : ${a.perSecond.toFixed(1)} deliveries/s`);
    process.exit(0);
  }
  console.log(
    `LMTP deliveries, fsync on: ${MESSAGES} messages of ~${SIZE} bytes per round, ${USERS} users, ${CONCURRENCY} connections, ${ROUNDS} rounds`,
  );
  const a: number[] = [];
  const b: number[] = [];
  let lost = false;
  for (let round = 1; round <= ROUNDS; round++) {
    const roundDir = join(dir, String(round));
    await mkdir(roundDir);
    const x = await ours(roundDir);
    const y = await dovecot();
    if (x.stored !== x.ok || y.stored !== y.ok) lost = true;
    a.push(x.perSecond);
    b.push(y.perSecond);
    console.log(
      `round ${round}: mailinfra ${x.perSecond.toFixed(1)}/s, dovecot ${y.perSecond.toFixed(1)}/s, ratio ${(x.perSecond / y.perSecond).toFixed(2)}`,
    );
    await rm(roundDir, { recursive: true, force: true });
  }
  console.log(`mailinfra lmtp : ${median(a).toFixed(1)} deliveries/s (median)`);
  console.log(`dovecot lmtp   : ${median(b).toFixed(1)} deliveries/s (median)`);
  // Paired per round: load from elsewhere on the machine drifts between rounds, less within one.
  const ratios = a.map((x, i) => x / (b[i] as number));
  console.log(
    `ratio mailinfra/dovecot: ${median(ratios).toFixed(2)} (median of the per-round ratios; ratio of medians ${(median(a) / median(b)).toFixed(2)})`,
  );
  if (lost) console.log("WARNING: stored file count differs from acknowledgements");
} finally {
  await rm(dir, { recursive: true, force: true });
}
