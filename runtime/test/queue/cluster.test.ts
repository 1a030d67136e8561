/**
 * `serve smtp` with smtp.workers = 2 (smtp/cluster.ts): a primary that runs
 * the one delivery runner and two acceptor processes sharing the listener.
 * Messages acknowledged by any acceptor are delivered exactly once; an
 * acceptor killed with SIGKILL in the middle of DATA leaves no partial message
 * (nothing in msg/, its tmp/ file removed, nothing delivered), loses no
 * acknowledged one, and is replaced; /metrics sums the acceptors' counters;
 * SIGTERM drains every process. Per-client limits and smtp.maxConnections
 * hold per host, not per acceptor (smtp/anvil.ts): connections handed out
 * round robin (Node's NODE_CLUSTER_SCHED_POLICY=rr), so each acceptor sees
 * half of a client's.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openQueue } from "../../src/queue/index.js";
import { type ClusterProcess, startClusterProcess } from "../imap/cluster-process.js";
import {
  concurrencyProbe,
  makeCert,
  makeConfig,
  python,
  type Sink,
  startSink,
  startWorld,
  type World,
} from "../smtp/harness.js";

const SERVE = fileURLToPath(new URL("./fixtures/serve-cluster.ts", import.meta.url));

const run = promisify(execFile);
let world: World;
const children = new Set<ChildProcess>();

beforeAll(async () => {
  world = await startWorld();
});

afterAll(async () => {
  for (const child of children) {
    if (child.pid && child.exitCode === null && child.signalCode === null) {
      const exited = once(child, "exit");
      child.kill("SIGTERM");
      await exited;
    }
  }
  await world?.stop();
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function until(
  what: string,
  check: () => Promise<boolean> | boolean,
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

interface Cluster extends ClusterProcess {
  mx: number;
}

async function serve(configFile: string, env: NodeJS.ProcessEnv = {}): Promise<Cluster> {
  const started = await startClusterProcess(SERVE, configFile, env, children);
  return { ...started, mx: Number(started.addresses[0]?.split(":").pop()) };
}

/** One smtplib connection per group, the groups in parallel (so both acceptors get some). */
async function sendParallel(port: number, markers: string[][]): Promise<string[]> {
  const outs = await Promise.all(
    markers.map((group) =>
      python(
        `
import smtplib, sys, json
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]))
s.ehlo("cluster.client.test")
for m in json.loads(sys.argv[2]):
    s.mail("sender@remote.test")
    code, text = s.rcpt("alice@example.org")
    assert code == 250, text
    code, text = s.data(("Subject: " + m + "\\r\\n\\r\\nbody\\r\\n").encode())
    print(code, text.decode())
s.quit()
`,
        [String(port), JSON.stringify(group)],
      ),
    ),
  );
  return outs.flatMap((o) => o.trim().split("\n"));
}

function count(sink: Sink, marker: string): number {
  return sink.messages.filter((m) => m.data.toString().includes(`Subject: ${marker}\r\n`)).length;
}

async function setup(name: string): Promise<{ queueDir: string; sink: Sink; file: string }> {
  const queueDir = await mkdtemp(join(world.dir, `queue-${name}-`));
  const sink = await startSink({ lmtp: true });
  const config = makeConfig({ queueDir, lmtpPort: sink.port });
  const file = join(queueDir, "..", `config-${name}-${sink.port}.json`);
  await writeFile(
    file,
    JSON.stringify({
      ...config,
      ldap: world.slapd.ldapConfig({ cacheTtlSeconds: 0 }),
      smtp: { ...config.smtp, relay: undefined, workers: 2 },
    }),
  );
  return { queueDir, sink, file };
}

describe("smtp.workers = 2", () => {
  it("an acceptor killed mid-DATA: no partial message, no acknowledged one lost, a new acceptor", async () => {
    const { queueDir, sink, file } = await setup("kill");
    try {
      const cluster = await serve(file);
      expect(cluster.pids).toHaveLength(2);
      const before = Array.from({ length: 4 }, (_, g) =>
        Array.from({ length: 5 }, (_, i) => `ack-${g}-${i}`),
      );
      const replies = await sendParallel(cluster.mx, before);
      expect(replies).toHaveLength(20);
      for (const r of replies) expect(r).toMatch(/^250 2\.0\.0 Ok: queued as /);

      // A session stopped in the middle of its DATA; python prints IN-DATA after the 354.
      const partial = spawn("python3", [
        "-c",
        `
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30)
f = s.makefile("rb")
def reply():
    while True:
        line = f.readline()
        if not line or line[3:4] == b" ":
            return line
reply()
for cmd in [b"EHLO mid.client.test", b"MAIL FROM:<sender@remote.test>", b"RCPT TO:<alice@example.org>", b"DATA"]:
    s.sendall(cmd + b"\\r\\n")
    r = reply()
s.sendall(b"Subject: partial-one\\r\\n\\r\\n" + b"half a message\\r\\n" * 2000)
print("IN-DATA " + r.decode().strip(), flush=True)
print("CLOSED " + repr(f.read()), flush=True)
`,
        String(cluster.mx),
      ]);
      children.add(partial);
      let pyOut = "";
      partial.stdout.on("data", (d: Buffer) => {
        pyOut += d.toString();
      });
      await until("the partial session's 354", () => pyOut.includes("IN-DATA"));
      expect(pyOut).toMatch(/IN-DATA 354/);
      // The acceptor holding that session (ss(8): the server side of the one established connection).
      const { stdout } = await run("ss", ["-tnpH", "state", "established", `( sport = :${cluster.mx} )`]);
      const holder = Number(/pid=(\d+)/.exec(stdout)?.[1]);
      expect(cluster.pids).toContain(holder);
      process.kill(holder, "SIGKILL");
      const killed = [holder];
      await until(`acceptor ${holder} gone`, () => !alive(holder));
      await until("the partial session closed", () => pyOut.includes("CLOSED"));
      expect(pyOut).not.toMatch(/CLOSED b'.*250/);

      // Every acknowledged message delivered exactly once; the partial one nowhere.
      await until("20 deliveries", () => before.flat().every((m) => count(sink, m) === 1));
      await until("queue empty", async () => (await readdir(join(queueDir, "msg"))).length === 0);
      // The dead acceptor's tmp file is removed by the primary.
      await until("tmp/ empty", async () => {
        const left = await readdir(join(queueDir, "tmp"));
        return !left.some((n) => killed.some((pid) => n.split(".")[2] === String(pid)));
      });
      expect(count(sink, "partial-one")).toBe(0);

      // A replacement acceptor is started; new mail is taken (by it or the other one).
      await until("a new acceptor", async () => {
        // The primary's children, but tsx's esbuild service.
        const { stdout } = await run("ps", ["-o", "pid=,comm=", "--ppid", String(cluster.child.pid)]).catch(
          () => ({ stdout: "" }),
        );
        const pids = stdout
          .trim()
          .split("\n")
          .filter((l) => l && !l.includes("esbuild"))
          .map((l) => Number.parseInt(l, 10));
        return pids.length === 2 && !pids.includes(holder);
      });
      const [after] = await sendParallel(cluster.mx, [["after-kill"]]);
      expect(after).toMatch(/^250 /);
      await until("after-kill delivered", () => count(sink, "after-kill") === 1);
      expect(count(sink, "partial-one")).toBe(0);
      for (const m of before.flat()) expect(count(sink, m)).toBe(1);
    } finally {
      await sink.close();
    }
  });

  it("sums the acceptors' counters in /metrics and drains every process on SIGTERM", async () => {
    const { queueDir, sink, file } = await setup("metrics");
    try {
      const cluster = await serve(file);
      const groups = Array.from({ length: 6 }, (_, g) => [`m-${g}-a`, `m-${g}-b`]);
      for (const r of await sendParallel(cluster.mx, groups)) expect(r).toMatch(/^250 /);
      await until("12 deliveries", () => groups.flat().every((m) => count(sink, m) === 1));
      cluster.child.kill("SIGUSR2");
      await until("metrics", () => cluster.out().includes("METRICS "));
      const line =
        cluster
          .out()
          .split("\n")
          .find((l) => l.startsWith("METRICS ")) ?? "";
      const text = JSON.parse(line.slice("METRICS ".length)) as string;
      expect(text).toMatch(/mailinfra_smtp_messages_total\{listener="mx",result="queued"\} 12\b/);
      expect(text).toMatch(/mailinfra_smtp_connections_total\{listener="mx"\} 6\b/);
      expect(text).toMatch(/mailinfra_queue_deliveries_total\{transport="lmtp",status="delivered"\} 12\b/);

      const exited = once(cluster.child, "exit");
      cluster.child.kill("SIGTERM");
      const [code] = (await exited) as [number | null];
      expect(code).toBe(0);
      for (const pid of cluster.pids) await until(`acceptor ${pid} stopped`, () => !alive(pid), 5000);
      expect((await readdir(join(queueDir, "msg"))).length).toBe(0);
    } finally {
      await sink.close();
    }
  });
});

describe("per-client limits with smtp.workers = 2 (the anvil in the primary)", () => {
  it("holds a client's connection rate and AUTH-failure throttle at the configured values", async () => {
    const queueDir = await mkdtemp(join(world.dir, "queue-anvil-"));
    const sink = await startSink({ lmtp: true });
    const base = makeConfig({ queueDir, lmtpPort: sink.port });
    const certDir = await mkdtemp(join(world.dir, "tls-anvil-"));
    const tls = await makeCert(certDir);
    await writeFile(join(certDir, "k.pem"), tls.key, { mode: 0o600 });
    await writeFile(join(certDir, "c.pem"), tls.cert);
    const file = join(queueDir, "..", `config-anvil-${sink.port}.json`);
    await writeFile(
      file,
      JSON.stringify({
        ...base,
        tls: { keyFile: join(certDir, "k.pem"), certFile: join(certDir, "c.pem") },
        filter: { ...base.filter, rate: { maxConnectionsPerMinute: 4, maxConcurrent: 0 } },
        ldap: world.slapd.ldapConfig({ cacheTtlSeconds: 0 }),
        smtp: {
          ...base.smtp,
          relay: { listen: [], submissionListen: ["127.0.0.1:0"], trustedNetworks: [] },
          authFailuresBeforeDelay: 10,
          authFailuresBeforeBlock: 3,
          workers: 2,
        },
      }),
    );
    try {
      const cluster = await serve(file, { NODE_CLUSTER_SCHED_POLICY: "rr" });
      const submission = Number(cluster.addresses[1]?.split(":").pop());
      expect(submission).toBeGreaterThan(0);
      // Eight connections from one address, one after the other: 4 a minute are allowed.
      const greetings = await python(
        `
import socket, sys
for i in range(8):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
    f = s.makefile("rb")
    line = f.readline()
    while line[3:4] == b"-":
        line = f.readline()
    print(line.decode().strip())
    try:
        s.sendall(b"QUIT\\r\\n")
        f.read()
    except OSError:
        pass  # a refused connection may be reset
    s.close()
`,
        [String(cluster.mx)],
      );
      const codes = greetings
        .trim()
        .split("\n")
        .map((l) => l.slice(0, 3));
      expect(codes).toEqual(["220", "220", "220", "220", "421", "421", "421", "421"]);
      expect(greetings).toMatch(/421 4\.7\.0 Too many connections/);

      // AUTH: 3 failures from one address block it on every acceptor, even with the right password.
      const out = await python(
        `
import smtplib, ssl, sys, os
def attempt(pw):
    s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), local_hostname="guesser.test")
    s.starttls(context=ssl._create_unverified_context())
    s.ehlo()
    s.esmtp_features["auth"] = "PLAIN"
    try:
        s.login("bob", pw)
        r = "235"
    except smtplib.SMTPAuthenticationError as e:
        r = str(e.smtp_code) + " " + e.smtp_error.decode()
    s.close()
    return r
for pw in ["guess1", "guess2", "guess3", os.environ["PW"], os.environ["PW"]]:
    print(attempt(pw))
`,
        [String(submission)],
        { PW: "bob-pw-2" },
      );
      const rows = out.trim().split("\n");
      expect(rows.map((r) => r.slice(0, 3))).toEqual(["535", "535", "535", "454", "454"]);
      expect(rows[3]).toContain("4.7.0 Too many authentication failures");
    } finally {
      await sink.close();
    }
  });

  it("holds a client's concurrent connections (filter.rate.maxConcurrent) across acceptors", async () => {
    const queueDir = await mkdtemp(join(world.dir, "queue-concurrent-"));
    const sink = await startSink({ lmtp: true });
    const base = makeConfig({ queueDir, lmtpPort: sink.port });
    const file = join(queueDir, "..", `config-concurrent-${sink.port}.json`);
    await writeFile(
      file,
      JSON.stringify({
        ...base,
        filter: { ...base.filter, rate: { maxConnectionsPerMinute: 0, maxConcurrent: 3 } },
        ldap: world.slapd.ldapConfig({ cacheTtlSeconds: 0 }),
        smtp: { ...base.smtp, relay: undefined, workers: 2 },
      }),
    );
    try {
      // Round robin: 3 held connections are 2 on one acceptor and 1 on the other, so a count per
      // acceptor would greet the 4th; the primary's count refuses it, and frees the slot on close.
      const cluster = await serve(file, { NODE_CLUSTER_SCHED_POLICY: "rr" });
      const lines = await concurrencyProbe(cluster.mx, 3);
      expect(lines.map((l) => l.slice(0, 3))).toEqual(["220", "220", "220", "421", "220", "220", "421"]);
      expect(lines[3]).toBe("421 4.7.0 Too many connections from your address, try again later");
      expect(lines[6]).toBe(lines[3]);
    } finally {
      await sink.close();
    }
  });
});

describe("smtp.maxConnections with smtp.workers = 2 (counted in the primary)", () => {
  it("holds for the host, not per acceptor, and frees a slot when a client leaves", async () => {
    const queueDir = await mkdtemp(join(world.dir, "queue-maxconn-"));
    const sink = await startSink({ lmtp: true });
    const base = makeConfig({ queueDir, lmtpPort: sink.port });
    const file = join(queueDir, "..", `config-maxconn-${sink.port}.json`);
    await writeFile(
      file,
      JSON.stringify({
        ...base,
        ldap: world.slapd.ldapConfig({ cacheTtlSeconds: 0 }),
        smtp: { ...base.smtp, relay: undefined, maxConnections: 3, workers: 2 },
      }),
    );
    try {
      // Round robin: each acceptor gets every other connection, so per acceptor all 5 would fit.
      const cluster = await serve(file, { NODE_CLUSTER_SCHED_POLICY: "rr" });
      const out = await python(
        `
import socket, sys, time
def greet(s):
    f = s.makefile("rb")
    line = f.readline()
    while line[3:4] == b"-":
        line = f.readline()
    return line.decode().strip()
held = []
for i in range(5):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
    g = greet(s)
    print(g)
    if g.startswith("220"):
        held.append(s)
    else:
        s.close()
# one leaves: its slot is free again (the acceptor tells the primary when the socket closes)
held[0].sendall(b"QUIT\\r\\n")
held[0].makefile("rb").read()
held[0].close()
time.sleep(0.5)
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
print(greet(s))
`,
        [String(cluster.mx)],
      );
      const lines = out.trim().split("\n");
      expect(lines.map((l) => l.slice(0, 3))).toEqual(["220", "220", "220", "421", "421", "220"]);
      // The host's limit, not a client's rate: its own refusal, before the pregreet pause.
      expect(lines[3]).toBe("421 4.3.2 Too many connected clients, try again in a moment");
    } finally {
      await sink.close();
    }
  });
});

describe("the delivering process", () => {
  it("ignores a late notice of a message it already delivered (found by its scan first)", async () => {
    const queueDir = await mkdtemp(join(world.dir, "queue-late-"));
    const sink = await startSink({ lmtp: true });
    const queue = await openQueue({
      config: makeConfig({ queueDir, lmtpPort: sink.port }).queue!,
      hostname: "mx.example.org",
      router: { resolve: async (address) => ({ address, route: { kind: "lmtp" } }) },
      logger: pino({ level: "silent" }),
    });
    try {
      // An acceptor's message: committed, its notice not (yet) sent; the periodic scan finds it.
      const message = Buffer.from("Subject: late-notice\r\n\r\nbody\r\n");
      const envelope = await queue.store.enqueue(message, {
        mailFrom: "sender@remote.test",
        recipients: [
          { address: "alice@example.org", original: "alice@example.org", route: { kind: "lmtp" } },
        ],
      });
      await until("delivered by the scan", () => count(sink, "late-notice") === 1);
      await until("queue empty", async () => (await readdir(join(queueDir, "msg"))).length === 0);
      // Now the notice arrives, bytes and all.
      queue.notify(envelope, message);
      await new Promise((r) => setTimeout(r, 1000));
      expect(count(sink, "late-notice")).toBe(1);
    } finally {
      await queue.drain(1000);
      await sink.close();
    }
  });
});
