/**
 * Clients nobody here wrote: Python's imaplib, curl's imap:// URLs, and
 * mbsync (Debian's isync) syncing a mailbox both ways with flags.
 * Passwords travel in the environment, netrc files or a PassCmd file,
 * never on a command line.
 */
import { execFile } from "node:child_process";
import { mkdtemp, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fixture, startServer, type TestServer, Transcript } from "./support.js";

const run = promisify(execFile);
let srv: TestServer;
let work: string;

beforeAll(async () => {
  srv = await startServer();
  work = await mkdtemp(join(tmpdir(), "imap-clients-"));
});
afterAll(async () => {
  await srv?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

describe("python3 imaplib", () => {
  it("logs in over STARTTLS and TLS, lists, fetches, searches, stores, copies, expunges, appends and idles", async () => {
    const { stdout } = await run(
      "python3",
      [fileURLToPath(new URL("./clients/imaplib_client.py", import.meta.url))],
      {
        env: {
          ...process.env,
          IMAP_HOST: "127.0.0.1",
          IMAP_PORT: String(srv.port),
          IMAP_TLS_PORT: String(srv.tlsPort),
          IMAP_USER: "alice",
          IMAP_PASSWORD: "alice-secret-1",
          IMAP_CAFILE: srv.certFile,
          FIXTURE: fileURLToPath(new URL("./fixtures/nested.eml", import.meta.url)),
        },
        timeout: 30_000,
      },
    );
    const r = JSON.parse(stdout) as Record<string, unknown>;
    expect(r.welcome).toMatch(/^\* OK/);
    expect(r.login).toBe("OK");
    expect(r.capabilities).toContain("IDLE");
    expect(r.append).toEqual(["OK", expect.stringMatching(/^\[APPENDUID \d+ 1\]/)]);
    expect(r.list).toMatch(/"Py"/);
    expect(r.select).toEqual(["OK", "2"]);
    expect(r.fetch_structure).toMatch(/BODYSTRUCTURE \(\(\("TEXT" "PLAIN" \("CHARSET" "ISO-8859-1"\)/);
    expect(r.fetch_structure).toMatch(/"MIXED" \("BOUNDARY" "outer-boundary"\)/);
    expect(r.fetch_structure).toMatch(/ENVELOPE \("Tue, 14 Mar 2023 09:26:53 \+0100"/);
    expect(r.fetch_structure).toMatch(/FLAGS \(\\Flagged/);
    expect(r.fetch_partial).toBe("1 (BODY[1.1]<0> {20}<<Hallo Alice,\r\nsch=F6>>)");
    expect(r.fetch_header_fields).toMatch(
      /Subject: =\?ISO-8859-1\?Q\?Gr=FC=DFe_aus_M=FCnchen\?= and a report\r\n\r\n>>/,
    );
    expect(r.fetch_rfc822).toBe((await fixture("nested.eml")).length);
    expect(r.flags_after_fetch).toMatch(/\\Seen/);
    expect(r.search_utf8).toBe("1");
    expect(r.search_ascii).toBe("1");
    expect(r.uid_search).toBe("1 2");
    expect(r.store).toMatch(/2 \(FLAGS \((\\\w+ ?)+\)\)/);
    expect(r.copy).toBe("OK");
    expect(r.expunge).toBe("2");
    expect(r.status).toMatch(/"?INBOX"? \(MESSAGES 1 UNSEEN 0\)/);
    expect(r.idle_continuation).toMatch(/^\+/);
    expect(r.idle_push).toBe("* 2 EXISTS");
    expect(r.idle_done).toMatch(/OK/);
    expect(r.logout).toBe("BYE");
    expect(r.ssl_login).toBe("OK");
    expect(r.ssl_select).toBe("OK");
    expect(r.bad_login).toMatch(/AUTHENTICATIONFAILED/);
  });
});

describe("python3 imaplib with zlib: COMPRESS=DEFLATE (RFC 4978)", () => {
  it("carries a session compressed after the OK, both ways, over implicit TLS", async () => {
    const { stdout } = await run(
      "python3",
      [fileURLToPath(new URL("./clients/imaplib_compress.py", import.meta.url))],
      {
        env: {
          ...process.env,
          IMAP_HOST: "127.0.0.1",
          IMAP_TLS_PORT: String(srv.tlsPort),
          IMAP_USER: "bob",
          IMAP_PASSWORD: "bob-secret-2",
          IMAP_CAFILE: srv.certFile,
        },
        timeout: 30_000,
      },
    );
    const r = JSON.parse(stdout) as Record<string, unknown>;
    expect(r.capability).toMatch(/\bCOMPRESS=DEFLATE\b/);
    expect(r.compress).toBe("OK");
    expect(r.append).toBe("OK");
    expect(r.select).toBe("OK");
    expect(r.fetched_equal).toBe(true);
    expect(r.search).toBe("1");
    // RFC 4978 §3: a second COMPRESS is refused with [COMPRESSIONACTIVE]
    expect(r.again_compress).toMatch(/COMPRESSIONACTIVE/);
    // the 90 KB message really came back deflated
    expect(r.plain_in as number).toBeGreaterThan(90_000);
    expect(r.wire_in as number).toBeLessThan((r.plain_in as number) / 10);
    expect(r.logout).toBe("BYE");
  });
});

describe("curl imap:// URLs", () => {
  let netrc: string;
  const curl = async (url: string, extra: string[] = []): Promise<string> => {
    const { stdout } = await run("curl", ["-sS", "--max-time", "20", "--netrc-file", netrc, ...extra, url]);
    return stdout;
  };
  beforeAll(async () => {
    netrc = join(work, "netrc");
    await writeFile(netrc, "machine 127.0.0.1 login bob password bob-secret-2\n", { mode: 0o600 });
    const t = await Transcript.connect(srv.port);
    await t.cmd("l", "LOGIN bob bob-secret-2");
    await t.cmd("c", "CREATE Curl");
    for (const f of ["plain.eml", "koi8.eml"]) {
      const m = await fixture(f);
      t.send(`a APPEND Curl {${m.length}+}\r\n`);
      t.send(m);
      t.send("\r\n");
      await t.until(/a OK.*\r\n/);
    }
    t.close();
  });

  it("lists mailboxes", async () => {
    expect(await curl(`imap://127.0.0.1:${srv.port}/`)).toMatch(/\* LIST \([^)]*\) "\/" "?Curl"?/);
  });

  it("fetches a message by UID, and a section", async () => {
    const plain = await curl(`imap://127.0.0.1:${srv.port}/Curl;UID=1`);
    expect(plain).toBe((await fixture("plain.eml")).toString("latin1"));
    const { stdout: koi8 } = await run(
      "curl",
      ["-sS", "--netrc-file", netrc, `imap://127.0.0.1:${srv.port}/Curl;UID=2;SECTION=TEXT`],
      { encoding: "buffer" },
    );
    // 8-bit KOI8-R bytes arrive untouched
    expect(koi8.toString("latin1")).toBe("\xf0\xd2\xc9\xd7\xc5\xd4, \xcd\xc9\xd2!\r\n");
  });

  it("searches", async () => {
    expect(await curl(`imap://127.0.0.1:${srv.port}/Curl?SUBJECT%20lunch`)).toMatch(/\* SEARCH 1\r?\n/);
    expect(await curl(`imap://127.0.0.1:${srv.port}/Curl?FROM%20ivan`)).toMatch(/\* SEARCH 2\r?\n/);
  });

  it("speaks STARTTLS when required (--ssl-reqd)", async () => {
    const out = await curl(`imap://127.0.0.1:${srv.port}/Curl;UID=1;SECTION=HEADER.FIELDS%20(SUBJECT)`, [
      "--ssl-reqd",
      "--cacert",
      srv.certFile,
    ]);
    expect(out).toMatch(/Subject: Lunch on Friday\?/);
  });
});

describe("mbsync (isync) syncing both ways with flags", () => {
  it("pulls, pushes, and carries flags and deletions in both directions", async () => {
    const dir = join(work, "mbsync");
    const local = join(dir, "mail");
    const passFile = join(dir, "pass");
    const rc = join(dir, "mbsyncrc");
    await run("mkdir", ["-p", local]);
    await writeFile(passFile, "alice-secret-1\n", { mode: 0o600 });
    await writeFile(
      rc,
      `IMAPAccount test
Host 127.0.0.1
Port ${srv.port}
User alice
PassCmd "cat ${passFile}"
SSLType None
AuthMechs LOGIN

IMAPStore remote
Account test

MaildirStore local
Path ${local}/
Inbox ${local}/INBOX
SubFolders Verbatim

Channel sync
Far :remote:
Near :local:
Patterns Sync
Create Both
Expunge Both
SyncState *
`,
    );
    const t = await Transcript.connect(srv.port);
    await t.cmd("l", "LOGIN alice alice-secret-1");
    await t.cmd("c", "CREATE Sync");
    for (const [i, f] of ["plain.eml", "koi8.eml", "nested.eml"].entries()) {
      const m = await fixture(f);
      t.send(`a${i} APPEND Sync ${i === 1 ? "(\\Flagged) " : ""}{${m.length}+}\r\n`);
      t.send(m);
      t.send("\r\n");
      await t.until(new RegExp(`a${i} OK.*\\r\\n`));
    }
    const mbsync = () => run("mbsync", ["-c", rc, "-a"], { timeout: 30_000 });
    await mbsync();
    const cur = join(local, "Sync", "cur");
    const files = async (): Promise<string[]> => [
      ...(await readdir(cur)),
      ...(await readdir(join(local, "Sync", "new"))).map((n) => `new/${n}`),
    ];
    let names = await files();
    expect(names).toHaveLength(3);
    expect(names.filter((n) => /:2,[A-Z]*F/.test(n))).toHaveLength(1);

    // local changes: mark one seen, delete one (trashed), add a new message
    const plainFile = (
      await Promise.all(
        names.map(
          async (n) =>
            [n, await readFile(join(local, "Sync", n.startsWith("new/") ? "" : "cur", n))] as const,
        ),
      )
    ).find(([, b]) => b.includes("Lunch on Friday"))![0];
    const nestedFile = names.find((n) => n !== plainFile && !/:2,[A-Z]*F/.test(n))!;
    const seenName = `${plainFile.replace(/^new\//, "").replace(/(:2,[A-Z]*)?$/, "")}:2,S`;
    await rename(
      join(local, "Sync", plainFile.startsWith("new/") ? "" : "cur", plainFile),
      join(cur, seenName),
    );
    const nestedPath = join(local, "Sync", nestedFile.startsWith("new/") ? "" : "cur", nestedFile);
    await rename(
      nestedPath,
      join(cur, `${nestedFile.replace(/^new\//, "").replace(/(:2,[A-Z]*)?$/, "")}:2,T`),
    );
    await writeFile(
      join(local, "Sync", "new", "1700000000.local1.host"),
      "Subject: from the laptop\r\n\r\nwritten offline\r\n",
    );
    // a server-side change at the same time: flag the KOI8 message answered
    await t.cmd("s", "SELECT Sync");
    await t.cmd("st", "STORE 2 +FLAGS (\\Answered)");
    await mbsync();

    const fetched = await t.cmd("n", "NOOP");
    expect(fetched).toBeDefined();
    const flags = await t.cmd("f", "FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])");
    expect(flags).toMatch(/FLAGS \(\\Seen[^)]*\)[^\r]*\r\nSubject: Lunch on Friday/);
    expect(flags).toMatch(/Subject: from the laptop/);
    expect(flags).not.toMatch(/Quarterly|Gr=FC/);
    names = await files();
    expect(names).toHaveLength(3);
    expect(names.some((n) => /:2,(?=[A-Z]*F)(?=[A-Z]*R)[A-Z]*$/.test(n))).toBe(true);
    t.close();
  });
});
