/**
 * `serve imap` with imap.workers = 2 (imap/service.ts, cluster/workers.ts):
 * a primary keeping the host's connection limits (cluster/limits.ts) and two
 * worker processes sharing the listeners, driven by Python's imaplib (one
 * driver process per client, clients/imaplib_driver.py) on 143 (STARTTLS)
 * and 993. Which worker holds a connection is read from ss(8), so each test
 * knows its clients sit on different workers. Connections are dealt round
 * robin (Node's NODE_CLUSTER_SCHED_POLICY=rr) so both workers get some.
 *   - the limits per address and per account and the failed-login delay
 *     hold per host, not per worker;
 *   - STORE, APPEND and EXPUNGE through one worker reach a session in IDLE
 *     or NOOP on the other (through the store's index and fs.watch);
 *   - a worker killed with SIGKILL is replaced, the other's sessions go on,
 *     the dead one's slots are freed; /metrics sums the workers; SIGTERM
 *     drains every process.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeCertificate } from "../support/tls.js";
import { type ClusterProcess, startClusterProcess } from "./cluster-process.js";
import { USERS } from "./support.js";

const SERVE = fileURLToPath(new URL("./fixtures/serve-imap-cluster.ts", import.meta.url));
const DRIVER = fileURLToPath(new URL("./clients/imaplib_driver.py", import.meta.url));
const run = promisify(execFile);
const ALICE = { user: "alice", password: USERS.alice!.password };

let dir: string;
let tls: { certFile: string; keyFile: string };
const children = new Set<ChildProcess>();

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "imap-workers-"));
  tls = await makeCertificate(dir);
});

afterAll(async () => {
  for (const child of children) {
    if (child.pid && child.exitCode === null && child.signalCode === null) {
      const exited = once(child, "exit");
      child.kill("SIGTERM");
      await exited;
    }
  }
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function until(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

interface Cluster extends ClusterProcess {
  port: number;
  tlsPort: number;
}

async function serve(name: string, limits: Record<string, number> = {}): Promise<Cluster> {
  const root = await mkdtemp(join(dir, `store-${name}-`));
  const file = join(dir, `config-${name}.json`);
  await writeFile(
    file,
    JSON.stringify({
      host: { name: "store1", roles: ["store"] },
      log: { level: "warn" },
      store: { root, fsync: false },
      tls,
      imap: {
        listen: ["127.0.0.1:0"],
        tlsListen: ["127.0.0.1:0"],
        workers: 2,
        authFailureDelayMs: 1500,
        limits,
      },
    }),
  );
  const started = await startClusterProcess(SERVE, file, { NODE_CLUSTER_SCHED_POLICY: "rr" }, children);
  const port = (i: number) => Number(started.addresses[i]?.split(":").pop());
  return { ...started, port: port(0), tlsPort: port(1) };
}

type Answer = {
  ok: boolean;
  error?: string;
  port?: number;
  data?: unknown;
  untagged?: Record<string, unknown>;
  lines?: string[];
  seconds?: number;
};

/** One imaplib client in its own python3 process. */
class Client {
  private readonly proc: ChildProcess;
  private readonly answers: Array<(a: Answer) => void> = [];
  localPort = 0;

  constructor() {
    this.proc = spawn("python3", [DRIVER], { stdio: ["pipe", "pipe", "inherit"] });
    children.add(this.proc);
    createInterface({ input: this.proc.stdout! }).on("line", (l) =>
      this.answers.shift()?.(JSON.parse(l) as Answer),
    );
  }

  send(cmd: Record<string, unknown>): Promise<Answer> {
    const answer = new Promise<Answer>((r) => this.answers.push(r));
    this.proc.stdin!.write(`${JSON.stringify({ name: "c", ...cmd })}\n`);
    return answer;
  }

  async open(port: number, mode: "plain" | "starttls" | "tls" = "plain"): Promise<Answer> {
    const a = await this.send({ op: "open", port, mode });
    this.localPort = a.port ?? 0;
    return a;
  }

  call(method: string, ...args: string[]): Promise<Answer> {
    return this.send({ op: "call", method, args });
  }

  async end(): Promise<void> {
    const exited = once(this.proc, "exit");
    this.proc.stdin!.end();
    await exited;
    children.delete(this.proc);
  }
}

/** Server pid per client port, for the connections to `port` (ss -p: the process holding each socket). */
async function holders(port: number): Promise<Map<number, number>> {
  const { stdout } = await run("ss", ["-tnpH", "state", "established", `( sport = :${port} )`]);
  const map = new Map<number, number>();
  for (const line of stdout.split("\n")) {
    const m = /:(\d+)\s+users:\(\("[^"]*",pid=(\d+)/.exec(line);
    if (m) map.set(Number(m[1]), Number(m[2]));
  }
  return map;
}

async function holder(port: number, c: Client): Promise<number> {
  let pid: number | undefined;
  await until("the connection in ss", async () => {
    pid = (await holders(port)).get(c.localPort);
    return pid !== undefined;
  });
  return pid!;
}

/** Opens clients until one sits on a worker other than `other`'s. */
async function onAnotherWorker(port: number, mode: "plain" | "starttls" | "tls", otherPid: number) {
  for (let i = 0; i < 6; i++) {
    const c = new Client();
    expect((await c.open(port, mode)).ok).toBe(true);
    const pid = await holder(port, c);
    if (pid !== otherPid) return { client: c, pid };
    await c.end();
  }
  throw new Error("every connection went to the same worker");
}

async function stopCluster(cluster: Cluster): Promise<void> {
  const exited = once(cluster.child, "exit");
  cluster.child.kill("SIGTERM");
  const [code] = (await exited) as [number | null];
  expect(code).toBe(0);
  children.delete(cluster.child);
}

describe("imap.workers = 2", () => {
  it("holds the limits per address and per account and the login-failure delay across workers", async () => {
    const cluster = await serve("limits", {
      maxConnectionsPerIp: 3,
      maxConnectionsPerUser: 2,
      authFailuresBeforeDelay: 2,
    });
    const clients = [new Client(), new Client(), new Client(), new Client()];
    try {
      const [a, b, c, d] = clients as [Client, Client, Client, Client];
      for (const x of [a, b, c]) expect((await x.open(cluster.port)).ok).toBe(true);
      const pids = new Set(await Promise.all([a, b, c].map((x) => holder(cluster.port, x))));
      expect(pids.size).toBe(2);
      // the fourth from the same address: refused whichever worker takes it
      const fourth = await d.open(cluster.port);
      expect(fourth.ok).toBe(false);
      expect(fourth.error).toMatch(/BYE.*Too many connections from your address/);

      // two sessions of alice at most, on the two workers together
      expect((await a.send({ op: "login", ...ALICE })).ok).toBe(true);
      expect((await b.send({ op: "login", ...ALICE })).ok).toBe(true);
      const third = await c.send({ op: "login", ...ALICE });
      expect(third.ok).toBe(false);
      expect(third.error).toMatch(/LIMIT.*Too many connections for this account/);
      for (const x of [a, b, c]) await x.send({ op: "close" });

      // the second failure from this address comes slowly, wherever the first one happened
      await until("the slots given back", async () => (await holders(cluster.port)).size === 0);
      await new Promise((r) => setTimeout(r, 300));
      const e = new Client();
      clients.push(e);
      expect((await e.open(cluster.port)).ok).toBe(true);
      const ePid = await holder(cluster.port, e);
      const { client: f } = await onAnotherWorker(cluster.port, "plain", ePid);
      clients.push(f);
      const first = await e.send({ op: "login", user: "alice", password: "wrong-1" });
      expect(first.ok).toBe(false);
      expect(first.seconds).toBeLessThan(1);
      const second = await f.send({ op: "login", user: "alice", password: "wrong-2" });
      expect(second.ok).toBe(false);
      expect(second.error).toMatch(/AUTHENTICATIONFAILED/);
      expect(second.seconds).toBeGreaterThanOrEqual(1.4);
    } finally {
      for (const x of clients) await x.end();
      await stopCluster(cluster);
    }
  });

  it("STORE, APPEND and EXPUNGE on one worker reach IDLE and NOOP on the other (STARTTLS and 993)", async () => {
    const cluster = await serve("notify");
    const a = new Client();
    let b: Client | undefined;
    try {
      expect((await a.open(cluster.port, "starttls")).ok).toBe(true);
      const aPid = await holder(cluster.port, a);
      const other = await onAnotherWorker(cluster.tlsPort, "tls", aPid);
      b = other.client;
      expect(cluster.pids).toContain(aPid);
      expect(cluster.pids).toContain(other.pid);

      expect((await a.send({ op: "login", ...ALICE })).ok).toBe(true);
      expect((await b.send({ op: "login", ...ALICE })).ok).toBe(true);
      const msg = (s: string) => `From: a@example.org\r\nSubject: ${s}\r\n\r\nbody ${s}\r\n`;
      for (const s of ["one", "two"]) expect((await a.call("append", "INBOX", "", "", msg(s))).ok).toBe(true);
      expect((await a.call("select", "INBOX")).ok).toBe(true);
      const sel = await b.call("select", "INBOX");
      expect(sel.data).toEqual(["2"]);

      // STORE there, NOOP here: the flag change as an untagged FETCH (RFC 3501 §7.4.2)
      expect((await a.call("store", "1", "+FLAGS", "(\\Flagged)")).ok).toBe(true);
      let fetched = "";
      await until(
        "the FETCH on the other worker",
        async () => {
          const n = await b!.call("noop");
          fetched += JSON.stringify(n.untagged?.FETCH ?? "");
          return fetched.includes("\\\\Flagged");
        },
        3000,
      );

      // APPEND there, IDLE here: EXISTS
      const idling = b.send({ op: "idle", until: "EXISTS", seconds: 8 });
      await new Promise((r) => setTimeout(r, 300));
      expect((await a.call("append", "INBOX", "", "", msg("three"))).ok).toBe(true);
      const exists = await idling;
      expect(exists.ok, JSON.stringify(exists)).toBe(true);
      expect(exists.lines).toContain("* 3 EXISTS");

      // STORE there, IDLE here: FETCH with the new flag
      const idling2 = b.send({ op: "idle", until: "FETCH", seconds: 8 });
      await new Promise((r) => setTimeout(r, 300));
      expect((await a.call("store", "2", "+FLAGS", "(\\Seen)")).ok).toBe(true);
      const stored = await idling2;
      expect(stored.lines?.join("\n")).toMatch(/^\* 2 FETCH \(.*\\Seen/m);

      // EXPUNGE there, IDLE here: EXPUNGE
      const idling3 = b.send({ op: "idle", until: "EXPUNGE", seconds: 8 });
      await new Promise((r) => setTimeout(r, 300));
      expect((await a.call("store", "1", "+FLAGS", "(\\Deleted)")).ok).toBe(true);
      expect((await a.call("expunge")).ok).toBe(true);
      const expunged = await idling3;
      expect(expunged.lines).toContain("* 1 EXPUNGE");
      const left = await b.send({ op: "call", method: "search", args: [null, "ALL"] });
      expect(left.data).toEqual(["1 2"]);
    } finally {
      await a.end();
      await b?.end();
      await stopCluster(cluster);
    }
  });

  it("replaces a killed worker, keeps the other's sessions, frees the dead one's slots; /metrics; SIGTERM", async () => {
    const cluster = await serve("kill", { maxConnectionsPerIp: 3 });
    const a = new Client();
    const clients = [a];
    try {
      expect((await a.open(cluster.port)).ok).toBe(true);
      const aPid = await holder(cluster.port, a);
      const { client: b, pid: bPid } = await onAnotherWorker(cluster.port, "plain", aPid);
      clients.push(b);
      for (const x of [a, b]) {
        expect((await x.send({ op: "login", ...ALICE })).ok).toBe(true);
        expect((await x.call("select", "INBOX")).ok).toBe(true);
      }

      process.kill(aPid, "SIGKILL");
      await until(`worker ${aPid} gone`, () => !alive(aPid));
      expect((await a.call("noop")).ok).toBe(false);
      // the other worker's session did not notice
      expect((await b.call("noop")).ok).toBe(true);
      expect((await b.call("append", "INBOX", "", "", "Subject: after\r\n\r\nx\r\n")).ok).toBe(true);

      await until("a new worker", async () => {
        const { stdout } = await run("ps", ["-o", "pid=,comm=", "--ppid", String(cluster.child.pid)]).catch(
          () => ({ stdout: "" }),
        );
        const pids = stdout
          .trim()
          .split("\n")
          .filter((l) => l && !l.includes("esbuild"))
          .map((l) => Number.parseInt(l, 10));
        return pids.length === 2 && !pids.includes(aPid) && pids.includes(bPid);
      });
      // a's slot went with its worker: b plus two more make the 3 allowed from this address
      const more = [new Client(), new Client()];
      clients.push(...more);
      for (const x of more) {
        expect((await x.open(cluster.port)).ok).toBe(true);
        expect((await x.send({ op: "login", ...ALICE })).ok).toBe(true);
      }
      const over = new Client();
      clients.push(over);
      expect((await over.open(cluster.port)).ok).toBe(false);

      // /metrics: the live workers' gauges and counters summed (b's LOGIN and the two new ones)
      cluster.child.kill("SIGUSR2");
      await until("metrics", () => cluster.out().includes("METRICS "));
      const line = cluster
        .out()
        .split("\n")
        .find((l) => l.startsWith("METRICS "));
      const text = JSON.parse(line!.slice("METRICS ".length)) as string;
      expect(text).toMatch(/^mailinfra_imap_connections 3$/m);
      expect(text).toMatch(/^mailinfra_imap_commands_total\{command="LOGIN",status="OK"\} 3$/m);

      const pids = [...(await holders(cluster.port)).values()];
      await stopCluster(cluster);
      for (const pid of pids) await until(`worker ${pid} stopped`, () => !alive(pid), 5000);
      expect((await b.call("noop")).ok).toBe(false);
    } finally {
      for (const x of clients) await x.end();
      if (cluster.child.exitCode === null) await stopCluster(cluster);
    }
  });
});
