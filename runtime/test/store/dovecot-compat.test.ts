// The Maildir we write is one Dovecot (Debian's, the reference server) reads
// as the same mailbox — flags in file names, keywords in dovecot-keywords,
// Maildir++ folders — and mail Dovecot writes (LF line endings, S=/W= sizes)
// is served by our store as RFC 822 text with CRLF.
import { execFile } from "node:child_process";
import { chown, readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMaildirStore, type MailStore } from "../../src/store/index.js";
import { type Dovecot, startDovecot } from "../support/dovecot.js";

const PASSWORD = "compat-secret";
let dovecot: Dovecot;
let store: MailStore;

function imap(port: number, script: string): Promise<unknown> {
  const program = `
import imaplib, json, sys
job = json.load(sys.stdin)
m = imaplib.IMAP4("127.0.0.1", job["port"])
m.login("compat", job["password"])
out = {}
${script}
m.logout()
print(json.dumps(out))
`;
  return new Promise((resolve, reject) => {
    const child = execFile("python3", ["-c", program], { timeout: 20_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${err.message}\n${stderr}`));
      else resolve(JSON.parse(stdout));
    });
    child.stdin?.end(JSON.stringify({ port, password: PASSWORD }));
  });
}

async function chownTree(path: string, uid: number, gid: number): Promise<void> {
  await chown(path, uid, gid);
  for (const entry of await readdir(path, { withFileTypes: true })) {
    const full = join(path, entry.name);
    if (entry.isDirectory()) await chownTree(full, uid, gid);
    else await chown(full, uid, gid);
  }
}

beforeAll(async () => {
  dovecot = await startDovecot({ password: PASSWORD, processes: 1 });
  store = createMaildirStore({ root: join(dovecot.dir, "mail"), defaultQuotaBytes: 1e9 });
});
afterAll(async () => {
  await store?.close();
  await dovecot?.stop();
});

describe("Maildir compatibility with Dovecot", () => {
  it("Dovecot reads our messages, flags, keywords and folders", async () => {
    const user = await store.open("compat");
    await user.append("INBOX", Buffer.from("Subject: first\r\n\r\none\r\n"), {
      flags: ["\\Seen", "$Forwarded"],
    });
    await user.append("INBOX", Buffer.from("Subject: second\r\n\r\ntwo\r\n"));
    await user.createMailbox("Archive/2024");
    await user.append("Archive/2024", Buffer.from("Subject: old\r\n\r\nold\r\n"), { flags: ["\\Flagged"] });
    // Dovecot's mail processes run as the dovecot user (owner of the mail root).
    const owner = await stat(join(dovecot.dir, "mail"));
    await chownTree(join(dovecot.dir, "mail", "compat"), owner.uid, owner.gid);
    const out = (await imap(
      dovecot.port,
      `
typ, data = m.list()
out["list"] = [d.decode() for d in data]
m.select("INBOX")
typ, data = m.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
out["inbox"] = [d[0].decode() + d[1].decode() for d in data if isinstance(d, tuple)]
m.select("Archive.2024")
typ, data = m.fetch("1", "(FLAGS)")
out["archive"] = [d.decode() for d in data]
`,
    )) as { list: string[]; inbox: string[]; archive: string[] };
    expect(out.list.some((l) => l.endsWith('"Archive.2024"') || l.endsWith(" Archive.2024"))).toBe(true);
    expect(out.inbox[0]).toMatch(/FLAGS \((?=.*\\Seen)(?=.*\$Forwarded)[^)]*\)/);
    expect(out.inbox[0]).toContain("Subject: first");
    expect(out.inbox[1]).toContain("Subject: second");
    expect(out.archive[0]).toContain("\\Flagged");
  });

  it("our store reads what Dovecot wrote: flags, keywords, CRLF text and RFC 822 size", async () => {
    await imap(
      dovecot.port,
      `
m.append("INBOX", "(\\\\Answered Later)", None, b"Subject: from dovecot\\r\\n\\r\\nline 1\\r\\nline 2\\r\\n")
out["ok"] = True
`,
    );
    const fresh = createMaildirStore({ root: join(dovecot.dir, "mail"), defaultQuotaBytes: 1e9 });
    const s = await (await fresh.open("compat")).openMailbox("INBOX", { readOnly: true });
    const last = s.messages().at(-1)!;
    expect(s.messages()).toHaveLength(3);
    expect([...last.flags].sort()).toEqual(["Later", "\\Answered"]);
    const text = await s.read(last.uid);
    expect(text.toString()).toBe("Subject: from dovecot\r\n\r\nline 1\r\nline 2\r\n");
    expect(last.size).toBe(text.length);
    // the earlier messages kept their flags through Dovecot's session
    expect([...(s.messages()[0]?.flags ?? [])].sort()).toEqual(["$Forwarded", "\\Seen"]);
    await s.close();
    await fresh.close();
  });
});
