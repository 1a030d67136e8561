/**
 * Many clients on one fresh account at once, across processes, as on the
 * store host: imaplib APPENDs to the IMAP server in this process and
 * smtplib.LMTP deliveries to two LMTP server processes. Every message must
 * land, nothing may stay in tmp/, and the Maildir++ quota must be exact.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { appendFile, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ImapServer } from "../../src/imap/server.js";
import { createMaildirStore } from "../../src/store/index.js";
import {
  calculateUsage,
  parseQuotaFile,
  QUOTA_FILE,
  QUOTA_FILE_MAX_BYTES,
  QUOTA_STALE_MS,
} from "../../src/store/quota.js";
import type { MailStore } from "../../src/store/types.js";
import { DEFAULT_LIMITS, memoryDirectory, USERS } from "../imap/support.js";

const CLIENTS = join(import.meta.dirname, "parallel-clients.py");
const LMTP_CHILD = join(import.meta.dirname, "lmtp-child.ts");
const QUOTA = 50 * 1024 ** 2;

let root: string;
let store: MailStore;
let imap: ImapServer;
let imapPort: number;
const children: ChildProcess[] = [];
const lmtpPorts: number[] = [];

function startLmtpChild(): Promise<number> {
  const proc = spawn(process.execPath, ["--import", "tsx", LMTP_CHILD, root], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  children.push(proc);
  return new Promise((resolve, reject) => {
    let out = "";
    proc.stdout?.on("data", (d: Buffer) => {
      out += d.toString();
      const m = /port (\d+) pid \d+\n/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    proc.on("exit", (code) => reject(new Error(`lmtp child exited with ${code}`)));
  });
}

interface Answers {
  imap: Array<[string, string]>;
  lmtp: Array<[number, string]>;
  errors: string[];
}

function runClients(job: object): Promise<Answers> {
  return new Promise((resolve, reject) => {
    const child = execFile("python3", [CLIENTS], { timeout: 60_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${err.message}\n${stderr}`));
      else resolve(JSON.parse(stdout) as Answers);
    });
    child.stdin?.end(JSON.stringify(job));
  });
}

/** Messages on disk in every folder: count and the sum of their sizes. */
async function onDisk(userRoot: string): Promise<{ messages: number; bytes: number; tmp: string[] }> {
  let messages = 0;
  let bytes = 0;
  const tmp: string[] = [];
  const folders = [
    userRoot,
    ...(await readdir(userRoot)).filter((n) => /^\.[^.]/.test(n)).map((n) => join(userRoot, n)),
  ];
  for (const folder of folders) {
    for (const sub of ["new", "cur"]) {
      for (const name of await readdir(join(folder, sub)).catch(() => [] as string[])) {
        messages += 1;
        bytes += (await readFile(join(folder, sub, name))).length;
      }
    }
    tmp.push(...(await readdir(join(folder, "tmp")).catch(() => [] as string[])));
  }
  return { messages, bytes, tmp };
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "store-conc-"));
  store = createMaildirStore({ root, fsync: true, defaultQuotaBytes: QUOTA });
  imap = new ImapServer({
    directory: memoryDirectory(),
    store,
    logger: pino({ level: "silent" }),
    limits: { ...DEFAULT_LIMITS, maxConnectionsPerUser: 100 },
    loginDisabledWithoutTls: false,
  });
  imapPort = Number((await imap.listen("127.0.0.1:0", false)).split(":").pop());
  lmtpPorts.push(...(await Promise.all([startLmtpChild(), startLmtpChild()])));
}, 30_000);

afterAll(async () => {
  await Promise.all(
    children.map(
      (c) =>
        new Promise<void>((resolve) => {
          if (c.exitCode !== null) return resolve();
          c.once("exit", () => resolve());
          c.kill("SIGTERM");
        }),
    ),
  );
  await imap?.drain(1000);
  await store?.close();
  if (root) await rm(root, { recursive: true, force: true });
});

describe("one fresh account under parallel APPEND and LMTP from several processes", () => {
  it("stores every message, leaves nothing in tmp/, and keeps maildirsize exact", async () => {
    const perClient = 4;
    const job = {
      host: "127.0.0.1",
      imap_port: imapPort,
      lmtp_ports: lmtpPorts,
      user: "bob",
      password: USERS.bob?.password,
      rcpt: "bob@example.org",
      imap_clients: 12,
      lmtp_clients: 12,
      per_client: perClient,
    };
    const answers = await runClients(job);
    expect(answers.errors).toEqual([]);
    expect(answers.imap).toHaveLength(12 * perClient);
    for (const [typ, text] of answers.imap) {
      expect(typ, text).toBe("OK");
      expect(text).toMatch(/\[APPENDUID \d+ \d+\]/);
    }
    expect(answers.lmtp).toHaveLength(12 * perClient);
    for (const [code, text] of answers.lmtp) expect(code, text).toBe(250);
    // every APPENDUID is distinct
    const uids = answers.imap.map(([, t]) => /APPENDUID \d+ (\d+)/.exec(t)?.[1]);
    expect(new Set(uids).size).toBe(uids.length);

    const userRoot = join(root, "bob");
    const disk = await onDisk(userRoot);
    expect(disk.messages).toBe(24 * perClient);
    expect(disk.tmp).toEqual([]);
    // maildirsize: header, then lines that sum to exactly what is on disk
    const text = await readFile(join(userRoot, QUOTA_FILE), "utf8");
    expect(text.split("\n")[0]).toBe(`${QUOTA}S`);
    const user = await store.open("bob");
    expect(await user.quota()).toEqual({ usedBytes: disk.bytes, limitBytes: QUOTA, messages: disk.messages });
    expect(await calculateUsage(userRoot)).toEqual({ bytes: disk.bytes, messages: disk.messages });
    // and the index agrees
    const status = await user.status("INBOX");
    expect(status.messages).toBe(disk.messages);
    expect(status.size).toBe(disk.bytes);
  }, 60_000);

  it("keeps the totals exact through parallel expunges and appends in one process", async () => {
    const user = await store.open("bob");
    const sessions = await Promise.all([0, 1, 2].map(() => user.openMailbox("INBOX")));
    const all = sessions[0]?.messages().map((m) => m.uid) ?? [];
    // A maildirsize past the Maildir++ size limit: the next reads recalculate while the others write.
    await appendFile(join(root, "bob", QUOTA_FILE), "0 0\n".repeat(QUOTA_FILE_MAX_BYTES / 4));
    // three sessions each delete and expunge their third while 30 appends run
    await Promise.all([
      ...Array.from({ length: 5 }, () => user.quota()),
      ...sessions.map(async (s, i) => {
        const mine = all.filter((_, k) => k % 3 === i);
        await s.setFlags(mine, "add", ["\\Deleted"]);
        await s.expunge(mine);
      }),
      ...Array.from({ length: 30 }, (_, i) =>
        user.append("INBOX", Buffer.from(`Subject: more ${i}\r\n\r\n${"z".repeat(i * 11)}\r\n`)),
      ),
    ]);
    for (const s of sessions) await s.close();
    const disk = await onDisk(join(root, "bob"));
    expect(disk.messages).toBe(30);
    expect(await user.quota()).toEqual({ usedBytes: disk.bytes, limitBytes: QUOTA, messages: 30 });
    // it was recalculated (short again) and later lines were appended to the new file
    expect((await readFile(join(root, "bob", QUOTA_FILE), "utf8")).length).toBeLessThan(QUOTA_FILE_MAX_BYTES);
  }, 30_000);
});

describe("maildirsize rules (Courier's README.maildirquota)", () => {
  const now = Date.UTC(2026, 0, 1);
  it("sums the lines under a matching limit header", () => {
    expect(parseQuotaFile("1000S\n300 2\n-100 -1\n", 1000, now, now)).toEqual({ bytes: 200, messages: 1 });
  });
  it("asks for a recalculation when the file is damaged, for another limit, negative or too big", () => {
    expect(parseQuotaFile("1000S\n300 x\n", 1000, now, now)).toBeNull();
    expect(parseQuotaFile("2000S\n300 2\n", 1000, now, now)).toBeNull();
    expect(parseQuotaFile("1000S\n-5 -1\n", 1000, now, now)).toBeNull();
    expect(parseQuotaFile(`1000S\n${"1 0\n".repeat(QUOTA_FILE_MAX_BYTES / 4)}`, 1000, now, now)).toBeNull();
  });
  it("recalculates an over-quota file only once it is 15 minutes old", () => {
    expect(parseQuotaFile("1000S\n1200 3\n", 1000, now - 60_000, now)).toEqual({ bytes: 1200, messages: 3 });
    expect(parseQuotaFile("1000S\n1200 3\n", 1000, now - QUOTA_STALE_MS - 1, now)).toBeNull();
    expect(parseQuotaFile("1000S\n900 3\n", 1000, now - QUOTA_STALE_MS - 1, now)).toEqual({
      bytes: 900,
      messages: 3,
    });
  });
});
