/**
 * SMTP in, LMTP out, fsync-durable queues on both sides, run side by side on
 * this machine:
 *   mailinfra: MX (bench/smtp-server.ts: recipients checked in a real slapd,
 *              durable queue, no content checks) → LMTP → our store
 *              (bench/lmtp-server.ts, Maildir with fsync)
 *   Postfix:   a throwaway instance (`postfix -c <tmp>`; virtual_mailbox_maps
 *              as the recipient check, its queue fsyncs as always) → LMTP →
 *              Dovecot's LMTP (mail_fsync = always)
 * Load, two generators nobody here wrote:
 *   - Postfix's smtp-source: SESSIONS parallel sessions, MESSAGES messages of
 *     SIZE bytes, recipients spread over USERS; one message per connection
 *     (TCP setup and the greeting count) and `-d` (each session keeps its
 *     connection);
 *   - postal (Debian's): SESSIONS threads, one message per connection, bodies
 *     up to SIZE bytes, for POSTAL_SECONDS, then stopped.
 * Prints messages accepted/s (until the generator is done) and delivered/s
 * (until the last file is in a Maildir), and the ratios. Then the number of
 * concurrent SMTP sessions our MX holds (HOLD connections, each greeted).
 * Our MX greets loopback clients at once (smtp.greeting.exemptNetworks, like
 * postscreen's permit_mynetworks); Postfix runs plain smtpd, no postscreen.
 *
 * Both systems stay up side by side and every phase alternates between them
 * for ROUNDS rounds (this machine is shared: its other load then falls on
 * both alike), each phase after a sync(1); the ratios are medians of the
 * per-round ratios. The cost of
 * each filter check is bench/filter.ts's job.
 *
 *   UV_THREADPOOL_SIZE=32 npx tsx bench/smtp.ts
 *   (env: MESSAGES SESSIONS SIZE USERS HOLD POSTAL_SECONDS ROUNDS WARMUP ONLY=mailinfra
 *    WORKERS=n: smtp.workers of our MX, default one per CPU; 1 = one process)
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { chmod, chown, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { RuntimeConfigSchema } from "../runtime/src/config/schema.js";
import { startDovecot } from "../runtime/test/support/dovecot.js";
import { startSlapd, type TestAccount } from "../runtime/test/support/slapd.js";

const run = promisify(execFile);
const MESSAGES = Number(process.env.MESSAGES ?? 2000);
const SESSIONS = Number(process.env.SESSIONS ?? 20);
const SIZE = Number(process.env.SIZE ?? 4096);
const USERS = Number(process.env.USERS ?? 20);
const HOLD = Number(process.env.HOLD ?? 10_000);
const POSTAL_SECONDS = Number(process.env.POSTAL_SECONDS ?? 10);
const ROUNDS = Number(process.env.ROUNDS ?? 3);
/** smtp.workers of our MX (acceptor processes); unset: the default, one per CPU. */
const WORKERS = process.env.WORKERS ? Number(process.env.WORKERS) : undefined;
const DOMAIN = "bench.example";

async function freePort(): Promise<number> {
  const s = net.createServer();
  s.listen(0, "127.0.0.1");
  await once(s, "listening");
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

async function countFiles(dir: string): Promise<number> {
  let n = 0;
  try {
    for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
      if (e.isFile() && /\/(new|cur)$/.test(e.parentPath)) n += 1;
    }
  } catch {
    return 0;
  }
  return n;
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.pid && child.exitCode === null && child.signalCode === null) {
    const exited = once(child, "exit");
    process.kill(child.pid, "SIGTERM");
    const timer = setTimeout(() => child.pid && process.kill(child.pid, "SIGKILL"), 5000);
    await exited;
    clearTimeout(timer);
  }
}

function spawnTsx(script: string, args: string[]): { child: ChildProcess; port: Promise<number> } {
  const profile =
    process.env.PROFILE_DIR && script.endsWith("smtp-server.ts")
      ? [`--cpu-prof`, `--cpu-prof-dir=${process.env.PROFILE_DIR}`]
      : [];
  const child = spawn(process.execPath, [...profile, "--import", "tsx", script, ...args], {
    stdio: ["ignore", "pipe", "inherit"],
    // fsync, rename and friends run on libuv's thread pool (4 threads by default):
    // with 100 sessions committing at once that pool, not the disk, is the limit.
    env: { ...process.env, UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE ?? "32" },
  });
  const port = new Promise<number>((resolve, reject) => {
    let out = "";
    child.stdout?.on("data", (d: Buffer) => {
      out += d.toString();
      const m = /port (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.once("exit", (code) => reject(new Error(`${script} exited ${code}`)));
  });
  return { child, port };
}

/** smtp-source: returns seconds taken. Recipients user0..user{USERS-1} spread over USERS runs. */
async function load(port: number, messages = MESSAGES, reuse = false): Promise<number> {
  const per = Math.ceil(messages / USERS);
  const sessions = Math.max(1, Math.floor(SESSIONS / USERS)) || 1;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: USERS }, (_, u) =>
      run("smtp-source", [
        ...(reuse ? ["-d"] : []),
        "-s",
        String(sessions),
        "-m",
        String(per),
        "-l",
        String(SIZE),
        "-M",
        "client.bench.test",
        "-f",
        `sender@source.test`,
        "-t",
        `user${u}@${DOMAIN}`,
        `127.0.0.1:${port}`,
      ]),
    ),
  );
  return (performance.now() - started) / 1000;
}

/**
 * Untimed messages per system before the rounds (WARMUP; at least one per
 * user). 2000: with 400, our first measured phase still ran ~25 % slower than
 * the same phase in later rounds even with no Postfix beside it (447 against
 * 611 and 536 accepted/s), with 2000 ~15 % (517 against 621).
 */
const WARMUP = Math.max(USERS, Number(process.env.WARMUP ?? 2000));

/**
 * WARMUP messages first, untimed, the same for both systems: mailboxes get
 * created (both stores do that on first delivery), and our processes'
 * JavaScript is compiled (a fresh V8 runs the first few hundred sessions
 * interpreted; a running MX does not), before the measured runs.
 */
async function warmUp(port: number, mail: string): Promise<void> {
  const n = Math.ceil(WARMUP / USERS) * USERS;
  await load(port, n);
  await waitStored(mail, n);
}

async function waitStored(dir: string, total: number, timeoutMs = 600_000): Promise<number> {
  const started = performance.now();
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if ((await countFiles(dir)) >= total) return (performance.now() - started) / 1000;
    if (Date.now() > deadline) throw new Error(`only ${await countFiles(dir)} of ${total} stored in ${dir}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface Phase {
  acceptedPerSecond: number;
  deliveredPerSecond: number;
}

type PhaseName = "perConnection" | "reused" | "postal";
const PHASES: Record<PhaseName, string> = {
  /** One message per connection (smtp-source default): connection setup and greeting count. */
  perConnection: "smtp-source, 1 msg/connection",
  /** smtp-source -d: each session sends its messages over one connection. */
  reused: "smtp-source -d (reused)      ",
  /** postal, one message per connection, for POSTAL_SECONDS. */
  postal: "postal, 1 msg/connection     ",
};

/** A system under test, up and warmed; idle while the other one is measured. */
interface System {
  name: string;
  port: number;
  /** Where its Maildirs are. */
  mail: string;
  stop(): Promise<void>;
}

/**
 * postal for POSTAL_SECONDS against `port`; accepted = what reached the
 * Maildirs once the queue has drained (all of it is delivered), over the
 * seconds postal ran; delivered/s = the same count over the time until the
 * last file arrived.
 */
async function postalLoad(port: number, mail: string, before: number, dir: string): Promise<Phase> {
  const users = join(dir, "postal-users");
  await writeFile(users, Array.from({ length: USERS }, (_, u) => `user${u}@${DOMAIN}\n`).join(""));
  const senders = join(dir, "postal-senders");
  await writeFile(senders, "sender@source.test\n");
  const started = performance.now();
  const child = spawn(
    "postal",
    [
      "-t",
      String(SESSIONS),
      "-c",
      "1",
      "-m",
      String(Math.max(1, Math.round(SIZE / 1024))),
      "-f",
      senders,
      `[127.0.0.1]${port}`,
      users,
    ],
    { stdio: ["ignore", "ignore", "ignore"] },
  );
  await new Promise((r) => setTimeout(r, POSTAL_SECONDS * 1000));
  const ran = (performance.now() - started) / 1000;
  await stopChild(child);
  // Settled: the count has not moved for 3 s.
  let last = -1;
  let lastChange = performance.now();
  let lastStoredAt = performance.now();
  for (;;) {
    const n = await countFiles(mail);
    if (n !== last) {
      if (last >= 0 && n > last) lastStoredAt = performance.now();
      last = n;
      lastChange = performance.now();
    } else if (performance.now() - lastChange > 3000) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const got = last - before;
  return { acceptedPerSecond: got / ran, deliveredPerSecond: got / ((lastStoredAt - started) / 1000) };
}

/**
 * One phase against a running system whose Maildirs are complete (nothing in
 * flight). The disk is flushed first (sync(1)): the other system's last phase
 * (or both warm-ups, before the first) leaves dirty pages whose write-back
 * would otherwise land in this one's fsyncs.
 */
async function measure(sys: System, phase: PhaseName, dir: string): Promise<Phase> {
  await run("sync");
  const before = await countFiles(sys.mail);
  if (phase === "postal") return postalLoad(sys.port, sys.mail, before, dir);
  const started = performance.now();
  const accepted = await load(sys.port, MESSAGES, phase === "reused");
  await waitStored(sys.mail, before + MESSAGES);
  const delivered = (performance.now() - started) / 1000;
  return { acceptedPerSecond: MESSAGES / accepted, deliveredPerSecond: MESSAGES / delivered };
}

async function ours(dir: string): Promise<System> {
  const accounts: TestAccount[] = Array.from({ length: USERS }, (_, u) => ({
    uid: `user${u}`,
    mail: `user${u}@${DOMAIN}`,
    password: `pw-${u}-bench`,
  }));
  const slapd = await startSlapd({ accounts });
  const mail = join(dir, "ours-mail");
  await mkdir(mail, { recursive: true });
  const store = spawnTsx(join(import.meta.dirname, "lmtp-server.ts"), [mail]);
  let mx: ReturnType<typeof spawnTsx> | undefined;
  const stop = async () => {
    if (mx) await stopChild(mx.child);
    await stopChild(store.child);
    await slapd.stop();
  };
  try {
    const lmtpPort = await store.port;
    const config = RuntimeConfigSchema.parse({
      host: { name: "mx.bench.example", roles: ["mx"] },
      ldap: slapd.ldapConfig({ cacheTtlSeconds: 60 }),
      smtp: {
        domains: [DOMAIN],
        mx: { listen: ["127.0.0.1:0"] },
        reverseLookup: false,
        maxConnections: HOLD + 2000,
        ...(WORKERS ? { workers: WORKERS } : {}),
      },
      queue: {
        dir: join(dir, "ours-queue"),
        lmtp: { host: "127.0.0.1", port: lmtpPort },
        concurrencyPerDestination: 20,
        // Postfix's minimal_backoff is 300 s too; a store that tempfails under load
        // would then dominate the figure, so both sides retry soon here.
        retryInitialSeconds: 2,
      },
    });
    const file = join(dir, "ours.json");
    await writeFile(file, JSON.stringify(config));
    mx = spawnTsx(join(import.meta.dirname, "smtp-server.ts"), [file]);
    const port = await mx.port;
    await warmUp(port, mail);
    return { name: "mailinfra      ", port, mail, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Opens `n` connections, waits for each greeting, holds them all for a moment, counts the live ones. */
async function holdSessions(port: number, n: number): Promise<number> {
  const sockets: net.Socket[] = [];
  let greeted = 0;
  const batch = 500;
  for (let i = 0; i < n; i += batch) {
    await Promise.all(
      Array.from(
        { length: Math.min(batch, n - i) },
        () =>
          new Promise<void>((resolve) => {
            const s = net.connect(port, "127.0.0.1");
            sockets.push(s);
            const timer = setTimeout(resolve, 20_000);
            s.once("data", (d) => {
              if (d.toString().startsWith("220 ")) greeted += 1;
              clearTimeout(timer);
              resolve();
            });
            s.on("error", () => {
              clearTimeout(timer);
              resolve();
            });
          }),
      ),
    );
  }
  await new Promise((r) => setTimeout(r, 3000));
  const alive = sockets.filter((s) => !s.destroyed && s.readyState === "open").length;
  for (const s of sockets) s.destroy();
  return Math.min(greeted, alive);
}

async function postfix(dir: string): Promise<System> {
  const base = join(dir, "postfix");
  const conf = join(base, "etc");
  await mkdir(conf, { recursive: true });
  await chmod(dir, 0o755);
  await chmod(base, 0o755);
  // Dovecot's LMTP with mail_fsync = always, as the runtime's store fsyncs every delivery.
  const dovecot = await startDovecot({ protocol: "lmtp", fsync: "always" });
  const dovecotMail = join(dovecot.dir, "mail");
  const port = await freePort();
  let started = false;
  const stop = async () => {
    if (started) await run("postfix", ["-c", conf, "stop"]).catch(() => undefined);
    await dovecot.stop();
  };
  try {
    await writeFile(
      join(conf, "vmailbox"),
      Array.from({ length: USERS }, (_, u) => `user${u}@${DOMAIN} user${u}/\n`).join(""),
    );
    await writeFile(
      join(conf, "main.cf"),
      `compatibility_level = 3.6
queue_directory = ${base}/queue
data_directory = ${base}/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = postfix.bench.example
mydestination =
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
virtual_mailbox_domains = ${DOMAIN}
virtual_mailbox_maps = texthash:${conf}/vmailbox
virtual_transport = lmtp:inet:127.0.0.1:${dovecot.port}
lmtp_destination_concurrency_limit = 20
minimal_backoff_time = 2s
queue_run_delay = 2s
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
default_process_limit = 200
smtp_dns_support_level = disabled
disable_dns_lookups = yes
maillog_file = ${base}/maillog
maillog_file_prefixes = ${base}
biff = no
`,
    );
    const master = (await readFile("/etc/postfix/master.cf", "utf8"))
      .replace(/^smtp(\s+)inet(\s+)n(\s+)-(\s+)y/m, `127.0.0.1:${port}$1inet$2n$3-$4n`)
      .replace(/^(\S+\s+(?:unix|inet|unix-dgram|fifo|pass)\s+\S+\s+\S+\s+)y(\s)/gm, "$1n$2");
    await writeFile(join(conf, "master.cf"), master);
    const pw =
      (await readFile("/etc/passwd", "utf8"))
        .split("\n")
        .find((l) => l.startsWith("postfix:"))
        ?.split(":") ?? [];
    for (const d of ["queue", "data"]) await mkdir(join(base, d), { recursive: true });
    await chown(join(base, "data"), Number(pw[2]), Number(pw[3]));
    await run("postfix", ["-c", conf, "check"]).catch(() => undefined);
    await run("postfix", ["-c", conf, "start"]);
    started = true;
    {
      const deadline = Date.now() + 15_000;
      for (;;) {
        const up = await new Promise<boolean>((resolve) => {
          const s = net.connect({ port, host: "127.0.0.1" }, () => {
            s.once("data", (d) => {
              s.destroy();
              resolve(d.toString().startsWith("220"));
            });
          });
          s.on("error", () => resolve(false));
        });
        if (up) break;
        if (Date.now() > deadline)
          throw new Error(
            `postfix did not start: ${await readFile(join(base, "maillog"), "utf8").catch(() => "")}`,
          );
        await new Promise((r) => setTimeout(r, 100));
      }
      await warmUp(port, dovecotMail);
      return { name: "postfix+dovecot", port, mail: dovecotMail, stop };
    }
  } catch (err) {
    await stop();
    throw err;
  }
}

const median = (xs: number[]): number => {
  const a = [...xs].sort((x, y) => x - y);
  const m = Math.floor(a.length / 2);
  return a.length % 2 ? (a[m] ?? 0) : ((a[m - 1] ?? 0) + (a[m] ?? 0)) / 2;
};

const dir = await mkdtemp(join(tmpdir(), "bench-smtp-"));
const systems: System[] = [];
try {
  console.log(
    `SMTP → queue (fsync) → LMTP → Maildir (fsync), our MX with smtp.workers=${WORKERS ?? "default (one per CPU)"}: ${MESSAGES} messages of ${SIZE} bytes per smtp-source run, postal for ${POSTAL_SECONDS} s, ${SESSIONS} parallel sessions, ${USERS} recipients, ${ROUNDS} alternating rounds, UV_THREADPOOL_SIZE=${process.env.UV_THREADPOOL_SIZE ?? "32 (set for the runtime's processes)"}`,
  );
  // Both systems stay up side by side; each phase alternates between them, round
  // after round, so the machine's other load falls on both alike.
  systems.push(await ours(dir));
  if (process.env.ONLY !== "mailinfra") systems.push(await postfix(dir));
  const results = new Map<string, Phase[]>();
  for (let round = 1; round <= ROUNDS; round++) {
    for (const phase of Object.keys(PHASES) as PhaseName[]) {
      for (const sys of round % 2 ? systems : [...systems].reverse()) {
        const p = await measure(sys, phase, dir);
        const key = `${sys.name}|${phase}`;
        results.set(key, [...(results.get(key) ?? []), p]);
        console.log(
          `round ${round} ${sys.name} ${PHASES[phase]}: ${p.acceptedPerSecond.toFixed(1)} accepted/s, ${p.deliveredPerSecond.toFixed(1)} delivered/s`,
        );
      }
    }
  }
  console.log(
    `\nmedians of ${ROUNDS} rounds (load average now ${loadavg()
      .map((l) => l.toFixed(1))
      .join(" ")}):`,
  );
  for (const sys of systems) {
    for (const phase of Object.keys(PHASES) as PhaseName[]) {
      const ps = results.get(`${sys.name}|${phase}`) ?? [];
      console.log(
        `${sys.name} ${PHASES[phase]}: ${median(ps.map((p) => p.acceptedPerSecond)).toFixed(1)} accepted/s, ${median(ps.map((p) => p.deliveredPerSecond)).toFixed(1)} delivered/s`,
      );
    }
  }
  const [a, b] = systems;
  if (a && b) {
    for (const phase of Object.keys(PHASES) as PhaseName[]) {
      const pa = results.get(`${a.name}|${phase}`) ?? [];
      const pb = results.get(`${b.name}|${phase}`) ?? [];
      // Per round (the two ran back to back), then the median of the rounds.
      const ratio = (f: (p: Phase) => number) => median(pa.map((p, i) => f(p) / f(pb[i] ?? p))).toFixed(2);
      console.log(
        `ratio mailinfra/postfix, ${PHASES[phase]}: accepted ${ratio((p) => p.acceptedPerSecond)}, delivered ${ratio((p) => p.deliveredPerSecond)}`,
      );
    }
  }
  if (a && HOLD > 0) {
    const held = await holdSessions(a.port, HOLD);
    console.log(`mailinfra MX: ${held} of ${HOLD} concurrent SMTP sessions held (each got its 220)`);
  }
} finally {
  for (const sys of systems.reverse()) await sys.stop().catch(() => undefined);
  await rm(dir, { recursive: true, force: true });
}
