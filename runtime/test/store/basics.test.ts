import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createMaildirStore, type MailStore, StoreError } from "../../src/store/index.js";

const msg = (subject: string, body = "hello") =>
  Buffer.from(`From: a@example.org\r\nTo: b@example.org\r\nSubject: ${subject}\r\n\r\n${body}\r\n`);

let dir: string;
let store: MailStore;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "store-"));
  store = createMaildirStore({ root: dir, fsync: true, defaultQuotaBytes: 1_000_000 });
});
afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (err instanceof StoreError) return err.code;
    throw err;
  }
  return "resolved";
}

describe("maildir store", () => {
  it("appends into new/ with increasing UIDs and reads back CRLF content", async () => {
    const user = await store.open("alice");
    const a = await user.append("INBOX", Buffer.from("Subject: x\n\nbare lf\n"));
    const b = await user.append("INBOX", msg("two"));
    expect(b.uid).toBe(a.uid + 1);
    expect(b.uidValidity).toBe(a.uidValidity);
    const names = await readdir(join(dir, "alice", "new"));
    expect(names).toHaveLength(2);
    expect(await readdir(join(dir, "alice", "tmp"))).toHaveLength(0);
    const s = await user.openMailbox("INBOX");
    expect(s.messages().map((m) => m.uid)).toEqual([a.uid, b.uid]);
    expect([...s.recent()]).toEqual([a.uid, b.uid]);
    expect((await s.read(a.uid)).toString()).toBe("Subject: x\r\n\r\nbare lf\r\n");
    expect(s.messages()[0]?.size).toBe(Buffer.byteLength("Subject: x\r\n\r\nbare lf\r\n"));
    // claimed \Recent moved the files to cur/
    expect(await readdir(join(dir, "alice", "new"))).toHaveLength(0);
    const again = await user.openMailbox("INBOX");
    expect(again.recent().size).toBe(0);
    await s.close();
    await again.close();
  });

  it("saves messages larger than the synchronous-write limit with their internal date", async () => {
    const user = await store.open("alice");
    const body = `${"l".repeat(78)}\r\n`.repeat(4000); // 320,000 octets: the file-handle path
    const date = new Date("2020-02-03T04:05:06Z");
    const { uid } = await user.append("INBOX", msg("big", body), { internalDate: date });
    expect(await readdir(join(dir, "alice", "tmp"))).toHaveLength(0);
    const [file] = await readdir(join(dir, "alice", "new"));
    // The file's mtime carries the internal date (what an index rebuild reads back).
    expect((await stat(join(dir, "alice", "new", file!))).mtime.getTime()).toBe(date.getTime());
    const s = await user.openMailbox("INBOX");
    expect((await s.read(uid)).equals(msg("big", body))).toBe(true);
    expect(s.messages()[0]?.internalDate.getTime()).toBe(date.getTime());
    await s.close();
  });

  it("keeps flags in file names and keywords in dovecot-keywords", async () => {
    const user = await store.open("bob");
    const { uid } = await user.append("INBOX", msg("f"), { flags: ["\\Seen", "$Forwarded"] });
    const s = await user.openMailbox("INBOX");
    expect([...(s.messages()[0]?.flags ?? [])].sort()).toEqual(["$Forwarded", "\\Seen"]);
    const r = await s.setFlags([uid], "add", ["\\Flagged", "\\Answered", "Work"]);
    expect(r.changed[0]?.modseq).toBeGreaterThan(1);
    const cur = await readdir(join(dir, "bob", "cur"));
    expect(cur[0]).toMatch(/:2,FRSab$/);
    expect(await readFile(join(dir, "bob", "dovecot-keywords"), "utf8")).toBe("0 $Forwarded\n1 Work\n");
    await s.setFlags([uid], "remove", ["\\Seen"]);
    expect((await readdir(join(dir, "bob", "cur")))[0]).toMatch(/:2,FRab$/);
    // a second session sees the change as flagsChanged, the first one did not get it twice
    const other = await user.openMailbox("INBOX");
    await s.setFlags([uid], "replace", ["\\Deleted"]);
    const changes = await other.sync();
    expect(changes.flagsChanged.map((m) => [...m.flags])).toEqual([["\\Deleted"]]);
    expect((await s.sync()).flagsChanged).toEqual([]);
    // CONDSTORE UNCHANGEDSINCE
    const stale = await s.setFlags([uid], "add", ["\\Seen"], { unchangedSince: 1 });
    expect(stale.modified).toEqual([uid]);
    expect(await code(s.setFlags([uid], "add", ["\\Bogus"]))).toBe("BADNAME");
    await s.close();
    await other.close();
  });

  it("expunges \\Deleted messages and reports them to other sessions", async () => {
    const user = await store.open("carol");
    for (let i = 0; i < 3; i++) await user.append("INBOX", msg(`m${i}`));
    const s = await user.openMailbox("INBOX");
    const other = await user.openMailbox("INBOX");
    const uids = s.messages().map((m) => m.uid);
    await s.setFlags([uids[1]!], "add", ["\\Deleted"]);
    expect(await s.expunge()).toEqual([uids[1]]);
    expect(s.messages().map((m) => m.uid)).toEqual([uids[0], uids[2]]);
    const changes = await other.sync();
    expect(changes.expunged).toEqual([uids[1]]);
    expect(other.messages()).toHaveLength(2);
    expect(await code(other.read(uids[1]!))).toBe("EXPUNGED");
    expect((await user.quota()).messages).toBe(2);
    await s.close();
    await other.close();
  });

  it("creates, lists, renames, deletes and subscribes Maildir++ folders", async () => {
    const user = await store.open("dave");
    await user.createMailbox("Archive/2024");
    await user.createMailbox("Entwürfe", { specialUse: "\\Drafts" });
    await user.createMailbox("a.b%c");
    expect(await readdir(join(dir, "dave"))).toEqual(
      expect.arrayContaining([".Archive.2024", ".Entwürfe", ".a%2Eb%25c"]),
    );
    expect(await readFile(join(dir, "dave", ".Archive.2024", "maildirfolder"), "utf8")).toBe("");
    await user.subscribe("Archive/2024");
    const list = await user.listMailboxes();
    expect(list).toEqual(
      expect.arrayContaining([
        { name: "Archive", subscribed: false, hasChildren: true, noSelect: true },
        { name: "Archive/2024", subscribed: true, hasChildren: false, noSelect: false },
        { name: "Entwürfe", subscribed: false, hasChildren: false, noSelect: false, specialUse: "\\Drafts" },
        { name: "a.b%c", subscribed: false, hasChildren: false, noSelect: false },
        { name: "INBOX", subscribed: false, hasChildren: false, noSelect: false },
      ]),
    );
    expect(await code(user.createMailbox("Archive/2024"))).toBe("ALREADYEXISTS");
    await user.append("Archive/2024", msg("old"));
    await user.renameMailbox("Archive", "Old");
    expect(await code(user.status("Archive/2024"))).toBe("NONEXISTENT");
    expect((await user.status("Old/2024")).messages).toBe(1);
    await user.subscribe("Old/2024");
    await user.deleteMailbox("Old/2024");
    // RFC 3501 §6.3.6: deleting the mailbox leaves its subscription in place
    expect(await user.listMailboxes()).toEqual(
      expect.arrayContaining([
        { name: "Old/2024", subscribed: true, hasChildren: false, noSelect: true, nonExistent: true },
      ]),
    );
    await user.unsubscribe("Old/2024");
    expect((await user.listMailboxes()).some((m) => m.name === "Old/2024")).toBe(false);
    expect(await code(user.deleteMailbox("INBOX"))).toBe("NOPERM");
    expect(await code(user.deleteMailbox("Nope"))).toBe("NONEXISTENT");
    expect((await user.quota()).messages).toBe(0);
  });

  it("renaming INBOX moves its messages and keeps INBOX", async () => {
    const user = await store.open("erin");
    await user.append("INBOX", msg("1"), { flags: ["\\Seen"] });
    await user.append("INBOX", msg("2"));
    await user.renameMailbox("INBOX", "Saved");
    expect((await user.status("INBOX")).messages).toBe(0);
    const st = await user.status("Saved");
    expect(st.messages).toBe(2);
    expect(st.unseen).toBe(1);
    const a = await user.append("INBOX", msg("3"));
    expect(a.uid).toBe(3); // INBOX UIDs never go back
  });

  it("refuses bad mailbox and account names", async () => {
    const user = await store.open("frank");
    for (const bad of [
      "",
      "..",
      "a/../b",
      "a//b",
      "/abs",
      "x/",
      "a\u0000b",
      "tab\there",
      "a/./b",
      "new\nline",
    ]) {
      const op = bad === "x/" ? user.status(bad) : user.createMailbox(bad);
      expect(await code(op), JSON.stringify(bad)).toBe(bad === "x/" ? "BADNAME" : "BADNAME");
    }
    expect(await code(user.createMailbox("x".repeat(300)))).toBe("BADNAME");
    for (const bad of ["..", ".", "a/b", "../etc", ".hidden", "", "a\u0001"]) {
      expect(await code(store.open(bad)), JSON.stringify(bad)).toBe("BADNAME");
    }
    expect(await code(user.append("Nope", msg("x")))).toBe("NONEXISTENT");
    await user.append("Auto", msg("x"), { createIfMissing: true });
    expect((await user.status("Auto")).messages).toBe(1);
    expect(await code(user.status("auto"))).toBe("NONEXISTENT"); // names other than INBOX are case-sensitive
  });

  it("enforces the quota (option, else default) and keeps usage in maildirsize", async () => {
    const user = await store.open("gina", { quotaBytes: 500 });
    await user.append("INBOX", Buffer.alloc(300, 65));
    expect(await code(user.append("INBOX", Buffer.alloc(300, 65)))).toBe("OVERQUOTA");
    const q = await user.quota();
    expect(q).toEqual({ usedBytes: 300, limitBytes: 500, messages: 1 });
    expect(await readFile(join(dir, "gina", "maildirsize"), "utf8")).toMatch(/^500S\n/);
    // usage recalculated when the file is lost
    await rm(join(dir, "gina", "maildirsize"));
    expect((await user.quota()).usedBytes).toBe(300);
    const dflt = await store.open("henry");
    expect((await dflt.quota()).limitBytes).toBe(1_000_000);
  });

  it("copies and moves with UIDPLUS mappings", async () => {
    const user = await store.open("ivan");
    await user.createMailbox("Dst");
    await user.append("INBOX", msg("1"), { flags: ["\\Seen", "Kw"] });
    await user.append("INBOX", msg("2"));
    const s = await user.openMailbox("INBOX");
    const [u1, u2] = s.messages().map((m) => m.uid) as [number, number];
    const c = await s.copy([u1], "Dst");
    expect(c.mapping).toEqual([[u1, 1]]);
    const m = await s.move([u2], "Dst");
    expect(m.mapping).toEqual([[u2, 2]]);
    expect(s.messages().map((x) => x.uid)).toEqual([u1]);
    const d = await user.openMailbox("Dst", { readOnly: true });
    expect([...(d.messages()[0]?.flags ?? [])].sort()).toEqual(["Kw", "\\Seen"]);
    expect((await d.read(2)).toString()).toContain("Subject: 2");
    expect(await code(s.copy([u1], "Missing"))).toBe("NONEXISTENT");
    expect(await code(d.expunge())).toBe("NOPERM");
    await s.close();
    await d.close();
  });

  it("rebuilds a missing or damaged index keeping UIDs when it can vouch for them", async () => {
    const user = await store.open("judy");
    for (let i = 0; i < 3; i++) await user.append("INBOX", msg(`m${i}`));
    const before = await user.status("INBOX");
    // a file dropped in by another MDA: gets the next UID, the others keep theirs
    await writeFile(join(dir, "judy", "new", "1700000000.M1P1.other,S=12"), "Subject: z\r\n");
    const s = await user.openMailbox("INBOX");
    expect(s.uidValidity).toBe(before.uidValidity);
    expect(s.messages().map((m) => m.uid)).toEqual([1, 2, 3, 4]);
    const guids = s.messages().map((m) => m.guid);
    expect(guids[3]).toBe("1700000000.M1P1.other");
    await s.close();
    // damaged index: rebuilt from the Maildir, new UIDVALIDITY
    await store.close();
    const text = await readFile(join(dir, "judy", "mailinfra-index"), "utf8");
    const at = text.indexOf("\n") + 3; // inside the first message line
    await writeFile(join(dir, "judy", "mailinfra-index"), `${text.slice(0, at)}9${text.slice(at + 1)}`);
    store = createMaildirStore({ root: dir, fsync: true, defaultQuotaBytes: 1_000_000 });
    const judy = await store.open("judy");
    const st = await judy.status("INBOX");
    expect(st.messages).toBe(4);
    expect(st.uidValidity).not.toBe(before.uidValidity);
    // the GUIDs (POP3 UIDL) live in the file names: the same after the rebuild
    const rebuilt = await judy.openMailbox("INBOX", { readOnly: true });
    expect(rebuilt.messages().map((m) => m.guid)).toEqual(guids);
    await rebuilt.close();
  });

  it("keeps deliveries in the index log; a torn log tail is ignored and compacted away", async () => {
    const user = await store.open("lena");
    for (let i = 0; i < 3; i++) await user.append("INBOX", msg(`m${i}`));
    const log = await readFile(join(dir, "lena", "mailinfra-index.log"), "utf8");
    // the first append created the index; the next two went to the log
    expect(log.split("\n").filter((l) => l.startsWith("A "))).toHaveLength(2);
    const before = await user.status("INBOX");
    // a power loss mid-append: half a line at the end
    await writeFile(join(dir, "lena", "mailinfra-index.log"), `${log}A 4 5 12 17000`);
    await store.close();
    store = createMaildirStore({ root: dir, fsync: true, defaultQuotaBytes: 1_000_000 });
    const again = await store.open("lena");
    const st = await again.status("INBOX");
    expect([st.messages, st.uidNext, st.uidValidity]).toEqual([3, 4, before.uidValidity]);
    const next = await again.append("INBOX", msg("m3"));
    expect(next.uid).toBe(4);
    // the writer folded everything into a new index instead of appending after garbage
    expect(await readdir(join(dir, "lena"))).not.toContain("mailinfra-index.log");
    const s = await again.openMailbox("INBOX");
    expect(s.messages().map((m) => m.uid)).toEqual([1, 2, 3, 4]);
    await s.close();
  });

  it("logs flag changes and expunges too; another store instance reads the same state", async () => {
    const user = await store.open("mona");
    for (let i = 0; i < 4; i++) await user.append("INBOX", msg(`m${i}`));
    const s = await user.openMailbox("INBOX");
    const uids = s.messages().map((m) => m.uid);
    await s.setFlags([uids[0]!, uids[2]!], "add", ["\\Seen", "Later"]);
    await s.setFlags([uids[3]!], "add", ["\\Deleted"]);
    expect(await s.expunge()).toEqual([uids[3]]);
    const log = await readFile(join(dir, "mona", "mailinfra-index.log"), "utf8");
    expect(log).toMatch(/^F /m);
    expect(log).toMatch(/^X /m);
    const other = createMaildirStore({ root: dir, fsync: true, defaultQuotaBytes: 1_000_000 });
    const view = await (await other.open("mona")).openMailbox("INBOX", { readOnly: true });
    expect(view.messages().map((m) => [m.uid, [...m.flags].sort(), m.modseq])).toEqual(
      s.messages().map((m) => [m.uid, [...m.flags].sort(), m.modseq]),
    );
    expect(view.highestModseq()).toBe((await user.status("INBOX")).highestModseq);
    await view.close();
    await other.close();
    await s.close();
  });

  it("two store instances (as two processes) stay in step through appends, flags and expunges", async () => {
    const other = createMaildirStore({ root: dir, fsync: false, defaultQuotaBytes: 1_000_000 });
    const a = await store.open("nina");
    const b = await other.open("nina");
    await a.append("INBOX", msg("seed"));
    const sa = await a.openMailbox("INBOX");
    const sb = await b.openMailbox("INBOX", { readOnly: true });
    const view = (s: typeof sa) =>
      s.messages().map((m) => `${m.uid}:${[...m.flags].sort().join(",")}:${m.modseq}`);
    for (let i = 0; i < 12; i++) {
      if (i % 3 === 0) await b.append("INBOX", msg(`b${i}`), i % 2 ? { flags: ["Tag"] } : {});
      if (i % 3 === 1) await sa.setFlags([sa.messages().at(-1)!.uid], "add", ["\\Seen"]);
      if (i % 3 === 2) {
        await sa.setFlags([sa.messages()[0]!.uid], "add", ["\\Deleted"]);
        await sa.expunge();
      }
      await sa.sync();
      await sb.sync();
      expect(view(sb), `step ${i}`).toEqual(view(sa));
      expect(sb.highestModseq()).toBe(sa.highestModseq());
    }
    await sa.close();
    await sb.close();
    await other.close();
  });

  it("notifies sessions of deliveries and locks the POP3 maildrop", async () => {
    const user = await store.open("kim");
    const s = await user.openMailbox("INBOX");
    let fired = 0;
    s.onChange(() => {
      fired += 1;
    });
    await user.append("INBOX", msg("n"));
    await new Promise((r) => setTimeout(r, 100));
    expect(fired).toBeGreaterThan(0);
    expect((await s.sync()).added).toHaveLength(1);
    const release = await user.lockMaildrop("pop3-1");
    expect(await code(user.lockMaildrop("pop3-2"))).toBe("INUSE");
    await release();
    const again = await user.lockMaildrop("pop3-3");
    await again();
    await s.close();
  });
});
