import { execFile } from "node:child_process";
import { readdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMaildirStore, type MailStore } from "../../src/store/index.js";
import { Conversation, harness, type Pop3Harness } from "./harness.js";

const POPLIB = join(import.meta.dirname, "poplib-client.py");

type Out = Array<string | { error: string } | [string, string[]] | Record<string, string[]>>;

function poplib(job: Record<string, unknown>): Promise<Out> {
  return new Promise((resolve, reject) => {
    const child = execFile("python3", [POPLIB], { timeout: 20_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${err.message}\n${stderr}`));
      else resolve(JSON.parse(stdout) as Out);
    });
    child.stdin?.end(JSON.stringify({ host: "127.0.0.1", ...job }));
  });
}

function curl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile("curl", ["-sS", "--max-time", "10", ...args], { encoding: "latin1" }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

let h: Pop3Harness;
let port: number;
let tlsPort: number;
let metrics: Registry;
let netrc: string;

const BOB = { user: "bob", password: "bob-secret-2" };
const DOTTED = "From: x@example.net\r\nSubject: one\r\n\r\nfirst\r\n.dot line\r\n..two dots\r\n.\r\nlast\r\n";

async function deliver(user: string, text: string): Promise<void> {
  const store = await h.store.open(user);
  await store.append("INBOX", Buffer.from(text));
}

beforeAll(async () => {
  h = await harness();
  ({ port, tlsPort, metrics } = await h.start());
  netrc = join(h.tmp, "netrc");
  await writeFile(netrc, "machine 127.0.0.1 login alice password alice-secret-1\n", { mode: 0o600 });
  await deliver("bob", DOTTED);
  await deliver("bob", "Subject: two\r\n\r\nsecond\r\n");
  await deliver("bob", "Subject: three\r\n\r\nthird\r\nline 2\r\nline 3\r\n");
  await deliver("alice", "Subject: for alice\r\n\r\nhello alice\r\n");
});
afterAll(async () => {
  await h?.stop();
});

describe("POP3 with poplib", () => {
  it("USER/PASS, STAT, LIST, UIDL, RETR with byte-stuffing, TOP; DELE applied only at QUIT", async () => {
    const inbox = await (await h.store.open("bob")).openMailbox("INBOX", { readOnly: true });
    const guids = inbox.messages().map((m) => m.guid);
    const sizes = inbox.messages().map((m) => m.size);
    await inbox.close();
    const out = await poplib({
      port,
      ...BOB,
      steps: [
        ["login"],
        ["stat"],
        ["list"],
        ["uidl"],
        ["retr", 1],
        ["top", 3, 1],
        ["dele", 2],
        ["rset"],
        ["dele", 2],
        ["stat"],
        ["quit"],
      ],
    });
    expect(out[0]).toMatch(/^\+OK Logged in, 3 messages/);
    expect(out[1]).toEqual([3, sizes[0]! + sizes[1]! + sizes[2]!]);
    expect((out[2] as [string, string[]])[1]).toEqual(sizes.map((s, i) => `${i + 1} ${s}`));
    expect((out[3] as [string, string[]])[1]).toEqual(guids.map((g, i) => `${i + 1} ${g}`));
    const retr = out[4] as [string, string[]];
    expect(retr[0]).toBe(`+OK ${sizes[0]} octets`);
    expect(retr[1]).toEqual([
      "From: x@example.net",
      "Subject: one",
      "",
      "first",
      ".dot line",
      "..two dots",
      ".",
      "last",
    ]);
    expect((out[5] as [string, string[]])[1]).toEqual(["Subject: three", "", "third"]);
    expect(out[9]).toEqual([2, sizes[0]! + sizes[2]!]);
    expect(out[10]).toMatch(/^\+OK/);
    const after = await (await h.store.open("bob")).status("INBOX");
    expect(after.messages).toBe(2);
    // UIDL is stable across sessions
    const again = await poplib({ port, ...BOB, steps: [["login"], ["uidl"], ["quit"]] });
    expect((again[1] as [string, string[]])[1]).toEqual([`1 ${guids[0]}`, `2 ${guids[2]}`]);
  });

  it("UIDL stays the same after a restart, on the other node, and when the index is lost or damaged", async () => {
    for (const n of [1, 2, 3]) await deliver("carol", `Subject: keep ${n}\r\n\r\nbody ${n}\r\n`);
    const CAROL = { user: "carol", password: "carol-secret-3" };
    const uidl = async (p: number): Promise<string[]> => {
      const out = await poplib({ port: p, ...CAROL, steps: [["login"], ["uidl"], ["quit"]] });
      return (out[1] as [string, string[]])[1];
    };
    const first = await uidl(port);
    expect(first).toHaveLength(3);
    expect(new Set(first.map((l) => l.split(" ")[1])).size).toBe(3);
    // a fresh store instance on the same root: a restarted service, or the passive node after failover
    const stores: MailStore[] = [];
    const fresh = (): MailStore => {
      stores.push(createMaildirStore({ root: h.root, fsync: false, defaultQuotaBytes: 1e9 }));
      return stores.at(-1) as MailStore;
    };
    const restarted = fresh();
    expect(await uidl((await h.start({ tls: false, store: restarted })).port)).toEqual(first);
    // the index is gone: rebuilt from the Maildir, same UIDLs in the same order
    const inbox = join(h.root, "carol");
    await rm(join(inbox, "mailinfra-index"));
    await rm(join(inbox, "mailinfra-index.log"), { force: true });
    expect(await uidl((await h.start({ tls: false, store: fresh() })).port)).toEqual(first);
    expect(await readdir(inbox)).toContain("mailinfra-index");
    // and damaged
    await writeFile(join(inbox, "mailinfra-index"), "mailinfra-index 2 garbage\n\u0000\u0000");
    expect(await uidl((await h.start({ tls: false, store: fresh() })).port)).toEqual(first);
    for (const s of stores) await s.close();
  });

  it("a session that ends without QUIT deletes nothing", async () => {
    const c = new Conversation(port);
    await c.line();
    expect(await c.cmd("USER bob")).toMatch(/^\+OK/);
    expect(await c.cmd("PASS bob-secret-2")).toMatch(/^\+OK/);
    expect(await c.cmd("DELE 1")).toMatch(/^\+OK/);
    c.close();
    await new Promise((r) => setTimeout(r, 200));
    expect((await (await h.store.open("bob")).status("INBOX")).messages).toBe(2);
  });

  it("locks the maildrop against a second session: -ERR [IN-USE]", async () => {
    const first = new Conversation(port);
    await first.line();
    await first.cmd("USER bob");
    expect(await first.cmd("PASS bob-secret-2")).toMatch(/^\+OK/);
    const out = await poplib({ port, ...BOB, steps: [["login"]] });
    expect(out[0]).toEqual({ error: "-ERR [IN-USE] Maildrop is locked by another POP3 session" });
    expect(await first.cmd("QUIT")).toMatch(/^\+OK/);
    await first.waitClosed();
    const later = await poplib({ port, ...BOB, steps: [["login"], ["quit"]] });
    expect(later[0]).toMatch(/^\+OK/);
  });

  it("-ERR [AUTH] for a wrong password", async () => {
    const out = await poplib({ port, user: "bob", password: "wrong", steps: [["login"]] });
    expect(out[0]).toEqual({ error: "-ERR [AUTH] Invalid login or password" });
    expect(await metrics.metrics()).toMatch(/mailinfra_pop3_logins_total\{result="auth"\} [1-9]/);
  });

  it("STLS (RFC 2595) then login, and implicit TLS", async () => {
    const out = await poplib({
      port,
      ...BOB,
      cafile: h.certFile,
      steps: [["capa"], ["stls"], ["capa"], ["login"], ["stat"], ["quit"]],
    });
    expect(Object.keys(out[0] as object)).toContain("STLS");
    expect(out[1]).toMatch(/^\+OK/);
    expect(Object.keys(out[2] as object)).not.toContain("STLS");
    expect(out[3]).toMatch(/^\+OK Logged in/);
    const ssl = await poplib({
      port: tlsPort,
      mode: "ssl",
      ...BOB,
      cafile: h.certFile,
      steps: [["login"], ["stat"], ["quit"]],
    });
    expect((ssl[1] as unknown as number[])[0]).toBe(2);
  });
});

describe("POP3 with curl", () => {
  it("lists and retrieves over pop3://, with USER/PASS from a netrc file", async () => {
    const list = await curl(["--netrc-file", netrc, `pop3://127.0.0.1:${port}/`]);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/^1 \d+\r\n$/);
    const retr = await curl(["--netrc-file", netrc, `pop3://127.0.0.1:${port}/1`]);
    expect(retr.stdout).toContain("Subject: for alice\r\n\r\nhello alice\r\n");
  });

  it("STLS via --ssl-reqd, implicit TLS via pop3s://, and AUTH PLAIN (with and without initial response)", async () => {
    const stls = await curl([
      "--ssl-reqd",
      "--cacert",
      h.certFile,
      "--netrc-file",
      netrc,
      `pop3://127.0.0.1:${port}/1`,
    ]);
    expect(stls.stdout).toContain("hello alice");
    const pop3s = await curl([
      "--cacert",
      h.certFile,
      "--netrc-file",
      netrc,
      `pop3s://127.0.0.1:${tlsPort}/1`,
    ]);
    expect(pop3s.stdout).toContain("hello alice");
    for (const ir of [["--sasl-ir"], []]) {
      const plain = await curl([
        ...ir,
        "--login-options",
        "AUTH=PLAIN",
        "--netrc-file",
        netrc,
        `pop3://127.0.0.1:${port}/1`,
      ]);
      expect(plain.stdout, plain.stderr).toContain("hello alice");
    }
    const bad = await curl([
      "--login-options",
      "AUTH=PLAIN",
      "-u",
      "alice:nope",
      `pop3://127.0.0.1:${port}/1`,
    ]);
    expect(bad.code).not.toBe(0);
  });
});

describe("POP3 transcripts", () => {
  it("answers malformed commands with -ERR and keeps going", async () => {
    const c = new Conversation(port);
    expect(await c.line()).toMatch(/^\+OK /);
    const bad = ["", "FOO", "STAT", "RETR 1", "PASS before-user", "USER", "USER a b", "X", "TOOLONGVERB"];
    for (const line of bad) expect(await c.cmd(line), JSON.stringify(line)).toMatch(/^-ERR /);
    c.send(Buffer.from([0, 255, 254, 13, 10]));
    expect(await c.line()).toMatch(/^-ERR /);
    expect(await c.cmd("USER bob")).toMatch(/^\+OK/);
    expect(await c.cmd("PASS bob-secret-2")).toMatch(/^\+OK/);
    const badTx = [
      "RETR",
      "RETR abc",
      "RETR 0",
      "RETR 99999999999999999999",
      "TOP 1",
      "TOP 1 -1",
      "LIST 1 2",
      "DELE 9",
      "USER bob",
      "STLS",
      "LIST -1",
    ];
    for (const line of badTx) expect(await c.cmd(line), line).toMatch(/^-ERR /);
    expect(await c.cmd("NOOP")).toBe("+OK");
    expect(await c.cmd("DELE 1")).toMatch(/^\+OK/);
    expect(await c.cmd("RETR 1")).toMatch(/^-ERR No such message/);
    expect(await c.cmd("LIST 1")).toMatch(/^-ERR/);
    expect(await c.cmd("RSET")).toMatch(/^\+OK/);
    expect(await c.cmd("LIST 1")).toMatch(/^\+OK 1 \d+$/);
    expect(await c.cmd("quit")).toMatch(/^\+OK/); // case-insensitive keywords
    expect(await c.waitClosed()).toBe(true);
  });

  it("AUTH PLAIN with a continuation, cancel with *, bad base64, proxy authzid refused", async () => {
    const c = new Conversation(port);
    await c.line();
    expect(await c.cmd("AUTH")).toBe("+OK");
    expect(await c.multi()).toEqual(["PLAIN"]);
    expect(await c.cmd("AUTH PLAIN")).toBe("+ ");
    expect(await c.cmd("*")).toMatch(/^-ERR/);
    expect(await c.cmd("AUTH PLAIN !!notbase64")).toMatch(/^-ERR/);
    const proxy = Buffer.from("alice\u0000bob\u0000bob-secret-2").toString("base64");
    expect(await c.cmd(`AUTH PLAIN ${proxy}`)).toMatch(/^-ERR \[AUTH\]/);
    expect(await c.cmd("AUTH CRAM-MD5")).toMatch(/^-ERR/);
    expect(await c.cmd("AUTH PLAIN")).toBe("+ ");
    expect(await c.cmd(Buffer.from("\u0000bob\u0000bob-secret-2").toString("base64"))).toMatch(
      /^\+OK Logged in/,
    );
    expect(await c.cmd("QUIT")).toMatch(/^\+OK/);
  });

  it("refuses logins before TLS when configured, and CAPA says so", async () => {
    const { port: strict } = await h.start({ loginDisabledWithoutTls: true });
    const c = new Conversation(strict);
    await c.line();
    c.send("CAPA");
    expect(await c.line()).toMatch(/^\+OK/);
    const caps = await c.multi();
    expect(caps).toContain("STLS");
    expect(caps).not.toContain("USER");
    expect(await c.cmd("USER bob")).toMatch(/^-ERR \[AUTH\]/);
    expect(await c.cmd("AUTH PLAIN AGJvYgBib2Itc2VjcmV0LTI=")).toMatch(/^-ERR \[AUTH\]/);
    c.close();
  });

  it("leaves no files behind in the maildrop", async () => {
    expect(await readdir(join(h.root, "bob", "tmp"))).toEqual([]);
    expect((await readdir(join(h.root, "bob"))).filter((n) => n.includes("lock"))).toEqual([]);
  });
});
