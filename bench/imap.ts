/**
 * IMAP figures, side by side with Debian's Dovecot (dovecot-imapd) on this machine.
 *
 * (a) Idle connections: IDLE_CONNECTIONS clients log in, SELECT INBOX and
 *     IDLE; memory per connection = (RSS summed over all of the server's
 *     processes after − before) / connections held. Our service runs as
 *     `serve imap` does, with IMAP_WORKERS workers (default: one per CPU)
 *     beside its primary (bench/imap-server.ts); a process here may hold at
 *     most `ulimit -Hn` descriptors, so the clients too are spread over
 *     processes (this file again, BENCH_ROLE=idle-client).
 * (b) Mixed workload: CLIENTS concurrent clients for DURATION seconds, each
 *     repeating a session of LOGIN, SELECT, FETCH (FLAGS), FETCH BODY.PEEK[],
 *     FETCH ENVELOPE+BODYSTRUCTURE, STORE, SEARCH (flags), SEARCH (header),
 *     APPEND, STORE \Deleted, EXPUNGE, LOGOUT; operations (commands) per
 *     second for ours and Dovecot, and the ratio. Both fsync saved mail
 *     (ours: file + directory; Dovecot: mail_fsync = optimized, its default).
 *
 *   npx tsx bench/imap.ts   (env: IDLE_CONNECTIONS=20000 IMAP_WORKERS=2 CLIENTS=40 DURATION=10 ROUNDS=3 USERS=40 MESSAGES=40
 *                            SKIP_IDLE=1 SKIP_MIXED=1 BENCH_TRACE=1 SERVER_NODE_ARGS="--cpu-prof")
 * Rounds alternate between the servers and the medians are compared: the
 * machine is shared, single runs vary.
 *
 * ulimit -n is raised to the hard limit by re-running itself under bash;
 * clients spread over 127.0.0.2–127.0.0.51 so ephemeral ports do not run out.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { startDovecot } from "../runtime/test/support/dovecot.js";

/** The target; each process here may hold at most `ulimit -Hn` (20,000) descriptors: servers and clients use several. */
const IDLE_CONNECTIONS = Number(process.env.IDLE_CONNECTIONS ?? 20_000);
/** Connections per client process (well under the descriptor limit). */
const PER_CLIENT_PROCESS = 7_000;
const CLIENTS = Number(process.env.CLIENTS ?? 40);
const DURATION = Number(process.env.DURATION ?? 10);
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const USERS = Number(process.env.USERS ?? 40);
const MESSAGES = Number(process.env.MESSAGES ?? 40);
const IDLE_USERS = 200;
/** Dovecot forks an imap process per connection; this many show its per-connection cost. */
const DOVECOT_IDLE_CONNECTIONS = Number(process.env.DOVECOT_IDLE_CONNECTIONS ?? 1000);
/** The idle-client processes get the parent's (in their environment, never on a command line). */
const PASSWORD =
  process.env.BENCH_ROLE === "idle-client"
    ? (process.env.BENCH_PASSWORD ?? "")
    : randomBytes(12).toString("hex");

function message(i: number): string {
  const line = `${"lorem ipsum dolor sit amet ".repeat(3).slice(0, 76)}\r\n`;
  return (
    `From: Bench Sender <bench@sender.example>\r\nTo: someone@bench.example\r\nSubject: bench ${i}\r\n` +
    `Date: Mon, 6 Mar 2023 10:00:00 +0000\r\nMessage-ID: <${i}.${Date.now()}@sender.example>\r\nMIME-Version: 1.0\r\n` +
    `Content-Type: text/plain; charset=utf-8\r\n\r\n${line.repeat(50)}`
  );
}

/** Time spent per command verb (BENCH_TRACE=1 prints it). */
const timings = new Map<string, [number, number]>();

/** A small IMAP client: one command at a time, literals skipped correctly. */
class Client {
  private buf: Buffer = Buffer.alloc(0);
  private wake: (() => void) | null = null;
  private closed = false;
  private n = 0;
  socket!: net.Socket;

  async connect(port: number, localAddress?: string): Promise<void> {
    this.socket = net.connect({ port, host: "127.0.0.1", ...(localAddress ? { localAddress } : {}) });
    this.socket.setNoDelay(true);
    this.socket.on("data", (d: Buffer) => {
      this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
      this.wake?.();
    });
    this.socket.on("close", () => {
      this.closed = true;
      this.wake?.();
    });
    this.socket.on("error", () => undefined);
    await this.readUntil((line) => line.startsWith("* OK"));
  }

  /** Reads lines (skipping literal bytes) until `done(line)`; returns the last line. */
  private async readUntil(done: (line: string) => boolean): Promise<string> {
    let pos = 0;
    for (;;) {
      const lf = this.buf.indexOf(10, pos);
      if (lf >= 0) {
        const line = this.buf.subarray(pos, lf - 1).toString("latin1");
        const m = /\{(\d+)\}$/.exec(line);
        if (m) {
          const need = lf + 1 + Number(m[1]);
          if (this.buf.length < need) {
            await this.more();
            continue;
          }
          pos = need;
          continue;
        }
        pos = lf + 1;
        if (done(line)) {
          this.buf = this.buf.subarray(pos);
          return line;
        }
        continue;
      }
      await this.more();
    }
  }

  private more(): Promise<void> {
    if (this.closed) throw new Error("connection closed");
    return new Promise((resolve) => {
      this.wake = () => {
        this.wake = null;
        resolve();
      };
    });
  }

  async cmd(command: string, literal?: string): Promise<string> {
    const t0 = performance.now();
    try {
      return await this.cmdInner(command, literal);
    } finally {
      const verb = command.split(" ")[0]!;
      const e = timings.get(verb) ?? [0, 0];
      e[0] += performance.now() - t0;
      e[1]++;
      timings.set(verb, e);
    }
  }

  private async cmdInner(command: string, literal?: string): Promise<string> {
    const tag = `t${++this.n}`;
    if (literal !== undefined) {
      this.socket.write(`${tag} ${command} {${Buffer.byteLength(literal)}}\r\n`);
      await this.readUntil((l) => l.startsWith("+") || l.startsWith(tag));
      this.socket.write(`${literal}\r\n`);
    } else this.socket.write(`${tag} ${command}\r\n`);
    const line = await this.readUntil((l) => l.startsWith(`${tag} `));
    if (!line.startsWith(`${tag} OK`)) throw new Error(`${command.split(" ")[0]}: ${line}`);
    return line;
  }

  async idle(): Promise<void> {
    this.socket.write("i IDLE\r\n");
    await this.readUntil((l) => l.startsWith("+"));
  }

  close(): void {
    this.socket.destroy();
  }
}

async function seed(port: number, users: number, messages: number): Promise<void> {
  const queue = Array.from({ length: users }, (_, u) => u);
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      for (let u = queue.shift(); u !== undefined; u = queue.shift()) {
        const c = new Client();
        await c.connect(port);
        await c.cmd(`LOGIN u${u} ${PASSWORD}`);
        for (let i = 0; i < messages; i++) await c.cmd("APPEND INBOX", message(i));
        await c.cmd("LOGOUT").catch(() => undefined);
        c.close();
      }
    }),
  );
}

interface OurServer {
  port: number;
  pid: number;
  /** Processes serving connections: the workers, or the one process. */
  workers: number;
  /** The primary's memory (after GC everywhere) and the connections open in all workers. */
  mem(): Promise<{ rss: number; heapUsed: number; connections: number }>;
  stop(): Promise<void>;
}

async function startOurs(root: string): Promise<OurServer> {
  const script = fileURLToPath(new URL("./imap-server.ts", import.meta.url));
  // SERVER_NODE_ARGS: e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" to profile the server
  const extra = (process.env.SERVER_NODE_ARGS ?? "").split(" ").filter(Boolean);
  const child: ChildProcess = spawn(process.execPath, [...extra, "--expose-gc", "--import", "tsx", script], {
    // as production should run it: the store's fsyncs and reads share libuv's thread pool (4 threads by default)
    env: { UV_THREADPOOL_SIZE: "64", ...process.env, BENCH_PASSWORD: PASSWORD, STORE_ROOT: root },
    stdio: ["pipe", "pipe", "inherit"],
  });
  const lines = createInterface({ input: child.stdout! });
  const waiting: Array<(l: string) => void> = [];
  lines.on("line", (l) => waiting.shift()?.(l));
  const next = (): Promise<string> => new Promise((r) => waiting.push(r));
  const { port, pids } = JSON.parse(await next()) as { port: number; pids: number[] };
  return {
    port,
    pid: child.pid!,
    workers: Math.max(1, pids.length - 1),
    async mem() {
      const p = next();
      child.stdin!.write("mem\n");
      return JSON.parse(await p);
    },
    async stop() {
      const exited = new Promise((r) => child.once("exit", r));
      child.stdin!.end();
      child.kill("SIGTERM");
      await exited;
    },
  };
}

const mb = (n: number): string => `${(n / 1024 / 1024).toFixed(1)} MB`;

/** A process and all its descendants (the primary, its workers, tsx's esbuild helpers). */
async function processTree(root: number): Promise<number[]> {
  const parents = new Map<number, number>();
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, "utf8").catch(() => "");
    const m = /\) \S+ (\d+)/.exec(stat);
    if (m) parents.set(Number(entry), Number(m[1]));
  }
  const tree = new Set([root]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const [pid, ppid] of parents)
      if (tree.has(ppid) && !tree.has(pid)) {
        tree.add(pid);
        grew = true;
      }
  }
  return [...tree];
}

/**
 * RSS and PSS (shared pages split among their users) summed over a process
 * tree, in bytes, and the open descriptors of each of its processes (how the
 * kernel spread the connections over the workers).
 */
async function treeMemory(
  root: number,
): Promise<{ rss: number; pss: number; processes: number; descriptors: number[] }> {
  let rss = 0;
  let pss = 0;
  let processes = 0;
  const descriptors: number[] = [];
  for (const pid of await processTree(root)) {
    const rollup = await readFile(`/proc/${pid}/smaps_rollup`, "utf8").catch(() => "");
    const r = /^Rss:\s+(\d+) kB/m.exec(rollup);
    const p = /^Pss:\s+(\d+) kB/m.exec(rollup);
    if (!r) continue;
    processes += 1;
    rss += Number(r[1]) * 1024;
    pss += Number(p?.[1] ?? 0) * 1024;
    descriptors.push((await readdir(`/proc/${pid}/fd`).catch(() => [])).length);
  }
  return { rss, pss, processes, descriptors };
}

/** Opens `n` connections that log in, SELECT INBOX and IDLE; resolves once all are idling. */
async function holdIdle(
  port: number,
  n: number,
  users: number,
  first = 0,
): Promise<{ clients: Client[]; seconds: number }> {
  const clients: Client[] = [];
  const started = Date.now();
  let next = first;
  await Promise.all(
    Array.from({ length: 200 }, async () => {
      for (let i = next++; i < first + n; i = next++) {
        const c = new Client();
        await c.connect(port, `127.0.0.${2 + (i % 50)}`);
        await c.cmd(`LOGIN u${i % users} ${PASSWORD}`);
        await c.cmd("SELECT INBOX");
        await c.idle();
        clients.push(c);
      }
    }),
  );
  return { clients, seconds: (Date.now() - started) / 1000 };
}

/** BENCH_ROLE=idle-client: holdIdle in this process, "HELD <n>" on stdout, hold until stdin ends. */
async function idleClient(): Promise<void> {
  const [port, n, users, first] = (process.env.IDLE_ARGS ?? "").split(",").map(Number) as [
    number,
    number,
    number,
    number,
  ];
  const { clients } = await holdIdle(port, n, users, first);
  process.stdout.write(`HELD ${clients.length}\n`);
  process.stdin.resume();
  process.stdin.on("end", () => {
    for (const c of clients) c.close();
    process.exit(0);
  });
}

/** holdIdle spread over client processes of at most PER_CLIENT_PROCESS connections each. */
async function holdIdleSpread(
  port: number,
  n: number,
  users: number,
): Promise<{ held: number; seconds: number; release(): Promise<void> }> {
  const started = Date.now();
  const procs = Math.ceil(n / PER_CLIENT_PROCESS);
  const children = Array.from({ length: procs }, (_, k) => {
    const first = Math.floor((k * n) / procs);
    const count = Math.floor(((k + 1) * n) / procs) - first;
    return spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url)], {
      env: {
        ...process.env,
        BENCH_ROLE: "idle-client",
        BENCH_PASSWORD: PASSWORD,
        IDLE_ARGS: [port, count, users, first].join(","),
      },
      stdio: ["pipe", "pipe", "inherit"],
    });
  });
  const counts = await Promise.all(
    children.map(
      (child) =>
        new Promise<number>((resolve, reject) => {
          createInterface({ input: child.stdout! }).on("line", (l) => {
            if (l.startsWith("HELD ")) resolve(Number(l.slice(5)));
          });
          child.once("exit", (code) => reject(new Error(`idle client exited ${code}`)));
        }),
    ),
  );
  return {
    held: counts.reduce((a, b) => a + b, 0),
    seconds: (Date.now() - started) / 1000,
    async release() {
      await Promise.all(
        children.map((child) => {
          const exited = new Promise((r) => child.once("exit", r));
          child.stdin!.end();
          return exited;
        }),
      );
    },
  };
}

async function idleBench(): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), "bench-imap-idle-"));
  const server = await startOurs(root);
  try {
    await seed(server.port, IDLE_USERS, 3);
    // warm-up: code paths, mailbox caches (in every worker)
    const warm = await Promise.all(
      Array.from({ length: 200 }, async (_, i) => {
        const c = new Client();
        await c.connect(server.port);
        await c.cmd(`LOGIN u${i % IDLE_USERS} ${PASSWORD}`);
        await c.cmd("SELECT INBOX");
        return c;
      }),
    );
    for (const c of warm) c.close();
    await new Promise((r) => setTimeout(r, 500));
    const before = await server.mem();
    const tree0 = await treeMemory(server.pid);
    const held = await holdIdleSpread(server.port, IDLE_CONNECTIONS, IDLE_USERS);
    await new Promise((r) => setTimeout(r, 1000));
    const after = await server.mem();
    const tree1 = await treeMemory(server.pid);
    const n = after.connections;
    const kb = (bytes: number) => `${(bytes / n / 1024).toFixed(1)} KB`;
    console.log(
      `(a) idle IMAP connections (LOGIN, SELECT INBOX, IDLE): ${n} held by the server (${held.held} clients idling),` +
        ` opened in ${held.seconds.toFixed(1)} s`,
    );
    console.log(
      `    ours (${server.workers} workers; ${tree1.processes} processes in all):` +
        ` RSS total ${mb(tree0.rss)} → ${mb(tree1.rss)}: ${kb(tree1.rss - tree0.rss)} per connection` +
        ` (PSS ${kb(tree1.pss - tree0.pss)}; primary RSS ${mb(before.rss)} → ${mb(after.rss)})`,
    );
    console.log(`    open descriptors per process (primary first): ${tree1.descriptors.join(", ")}`);
    await held.release();
  } finally {
    await server.stop();
    await rm(root, { recursive: true, force: true });
  }
  // Dovecot runs one imap process per connection: measure fewer, the figure is per connection
  const dovecot = await startDovecot({ password: PASSWORD, fsync: "optimized", processes: 4 });
  try {
    const users = 50;
    await seed(dovecot.port, users, 3);
    await new Promise((r) => setTimeout(r, 1000));
    const tree0 = await treeMemory(dovecot.pid);
    const held = await holdIdleSpread(dovecot.port, DOVECOT_IDLE_CONNECTIONS, users);
    await new Promise((r) => setTimeout(r, 1000));
    const tree1 = await treeMemory(dovecot.pid);
    console.log(
      `    dovecot: ${held.held} held: PSS ${mb(tree0.pss)} → ${mb(tree1.pss)}: ${((tree1.pss - tree0.pss) / held.held / 1024).toFixed(1)} KB per connection` +
        ` (RSS total ${mb(tree0.rss)} → ${mb(tree1.rss)})`,
    );
    await held.release();
  } finally {
    await dovecot.stop();
  }
  console.log("    target: 20,000 at ≤ 30 KB each");
}

async function workload(
  port: number,
): Promise<{ ops: number; seconds: number; sessions: number; errors: number }> {
  timings.clear();
  let ops = 0;
  let sessions = 0;
  let errors = 0;
  const deadline = Date.now() + DURATION * 1000;
  const started = Date.now();
  await Promise.all(
    Array.from({ length: CLIENTS }, async (_, k) => {
      const user = `u${k % USERS}`;
      let i = 0;
      while (Date.now() < deadline) {
        const c = new Client();
        try {
          await c.connect(port);
          await c.cmd(`LOGIN ${user} ${PASSWORD}`);
          await c.cmd("SELECT INBOX");
          await c.cmd("FETCH 1:* (FLAGS UID)");
          const n = 1 + (i++ % MESSAGES);
          await c.cmd(`FETCH ${n} (BODY.PEEK[])`);
          await c.cmd(`FETCH ${n}:* (ENVELOPE BODYSTRUCTURE RFC822.SIZE)`);
          await c.cmd(`STORE ${n} +FLAGS (\\Seen)`);
          await c.cmd("SEARCH UNSEEN");
          await c.cmd(`SEARCH SUBJECT "bench ${n}"`);
          await c.cmd("APPEND INBOX", message(1000 + i));
          await c.cmd("STORE * +FLAGS.SILENT (\\Deleted)");
          await c.cmd("EXPUNGE");
          await c.cmd("LOGOUT");
          ops += 12;
          sessions++;
        } catch (err) {
          errors++;
          if (errors < 5) console.error(`    client error: ${(err as Error).message}`);
        } finally {
          c.close();
        }
      }
    }),
  );
  if (process.env.BENCH_TRACE === "1") {
    console.log([...timings].map(([v, [ms, n]]) => `${v} ${(ms / n).toFixed(2)}ms`).join(", "));
  }
  return { ops, seconds: (Date.now() - started) / 1000, sessions, errors };
}

async function mixedBench(): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), "bench-imap-mixed-"));
  const ours = await startOurs(root);
  const dovecot = await startDovecot({ password: PASSWORD, fsync: "optimized", processes: 4 });
  try {
    await Promise.all([seed(ours.port, USERS, MESSAGES), seed(dovecot.port, USERS, MESSAGES)]);
    console.log(
      `(b) mixed workload: ${CLIENTS} clients, ${USERS} users with ${MESSAGES} messages, ${ROUNDS} alternating rounds of ${DURATION} s`,
    );
    const rate = (r: { ops: number; seconds: number }): number => r.ops / r.seconds;
    const theirs: number[] = [];
    const mine: number[] = [];
    let errors = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const d = await workload(dovecot.port);
      const o = await workload(ours.port);
      theirs.push(rate(d));
      mine.push(rate(o));
      errors += d.errors + o.errors;
      console.log(
        `    round ${round + 1}: dovecot ${rate(d).toFixed(0)} ops/s, ours ${rate(o).toFixed(0)} ops/s`,
      );
    }
    const median = (xs: number[]): number => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
    console.log(`    dovecot ${median(theirs).toFixed(0)} ops/s (median)`);
    console.log(
      `    ours    ${median(mine).toFixed(0)} ops/s (median)${errors ? `, ${errors} client errors` : ""}`,
    );
    console.log(`    ratio ours/dovecot: ${(median(mine) / median(theirs)).toFixed(2)} (target ≥ 1.0)`);
  } finally {
    await ours.stop();
    await dovecot.stop();
    await rm(root, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  if (process.env.BENCH_ROLE === "idle-client") return idleClient();
  if (process.env.BENCH_ULIMIT !== "1") {
    // re-run with a raised descriptor limit (20,000 sockets on each side)
    const args = [...process.execArgv, fileURLToPath(import.meta.url), ...process.argv.slice(2)];
    const child = spawn(
      "bash",
      ["-c", 'ulimit -n "$(ulimit -Hn)" && exec "$0" "$@"', process.execPath, ...args],
      {
        stdio: "inherit",
        env: { ...process.env, BENCH_ULIMIT: "1" },
      },
    );
    child.on("exit", (code) => process.exit(code ?? 1));
    return;
  }
  if (process.env.SKIP_IDLE !== "1") await idleBench();
  if (process.env.SKIP_MIXED !== "1") await mixedBench();
}

await main();
