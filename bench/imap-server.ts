/**
 * Our IMAP server in its own process for bench/imap.ts: the real Maildir
 * store (fsync on) under STORE_ROOT, a directory that knows users u0…uN with
 * BENCH_PASSWORD (from the environment), limits raised for the load.
 * Prints {"port": n} on stdout; answers "mem" on stdin with memory figures
 * after a full GC (run with --expose-gc).
 */
import { createInterface } from "node:readline";
import { pino } from "pino";
import type { Account, Directory } from "../runtime/src/directory/types.js";
import { ImapServer } from "../runtime/src/imap/server.js";
import { createMaildirStore } from "../runtime/src/store/index.js";

const password = process.env.BENCH_PASSWORD ?? "";
const root = process.env.STORE_ROOT ?? "";
if (!password || !root) throw new Error("BENCH_PASSWORD and STORE_ROOT are required");

const account = (uid: string): Account | null =>
  /^u\d+$/.test(uid)
    ? { uid, dn: `uid=${uid},dc=bench`, mail: `${uid}@bench.example`, addresses: [`${uid}@bench.example`] }
    : null;
const directory: Directory = {
  findByAddress: async (a) => account(a.split("@")[0]!),
  findByLogin: async (l) => account(l),
  authenticate: async (l, p) => (p === password ? account(l) : null),
  close: async () => undefined,
};
const store = createMaildirStore({
  root,
  fsync: process.env.FSYNC !== "0",
  defaultQuotaBytes: 10 * 1024 ** 3,
});
const server = new ImapServer({
  directory,
  store,
  logger: pino({ level: "warn" }),
  limits: {
    maxLineBytes: 65_536,
    maxLiteralBytes: 50 * 1024 ** 2,
    maxBadCommands: 20,
    idleTimeoutMs: 30 * 60_000,
    maxConnectionsPerIp: 1_000_000,
    maxConnectionsPerUser: 1_000_000,
    authFailuresBeforeDelay: 3,
    authFailureDelayMs: 2000,
  },
  loginDisabledWithoutTls: false,
});
const address = await server.listen("127.0.0.1:0", false);
process.stdout.write(`${JSON.stringify({ port: Number(address.split(":").pop()) })}\n`);

const gc = (globalThis as { gc?: () => void }).gc;
createInterface({ input: process.stdin }).on("line", (line) => {
  if (line.trim() === "mem") {
    gc?.();
    gc?.();
    const m = process.memoryUsage();
    process.stdout.write(
      `${JSON.stringify({ rss: m.rss, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers, connections: server.connectionCount })}\n`,
    );
  }
});
process.stdin.on("end", () => process.exit(0));
process.on("SIGTERM", () => process.exit(0));
