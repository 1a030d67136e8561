import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMaildirStore } from "../../src/store/index.js";

const CHILD = join(import.meta.dirname, "append-child.ts");
const FLAGS_CHILD = join(import.meta.dirname, "flags-child.ts");
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "store-proc-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function child(
  args: string[],
  script = CHILD,
): { proc: ChildProcess; lines: string[]; done: Promise<number | null> } {
  const proc = spawn(process.execPath, ["--import", "tsx", script, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: string[] = [];
  let buf = "";
  let err = "";
  proc.stdout?.on("data", (d: Buffer) => {
    buf += d.toString();
    const parts = buf.split("\n");
    buf = parts.pop() ?? "";
    lines.push(...parts);
  });
  proc.stderr?.on("data", (d: Buffer) => {
    err += d.toString();
  });
  const done = new Promise<number | null>((resolve) =>
    proc.on("exit", (code) => {
      if (code) console.error(err);
      resolve(code);
    }),
  );
  return { proc, lines, done };
}

describe("maildir store across processes", () => {
  it("gives unique, increasing UIDs to concurrent appends from several processes", async () => {
    const kids = [0, 1, 2].map((i) => child([dir, "shared", "25", "200", `p${i}`]));
    expect(await Promise.all(kids.map((k) => k.done))).toEqual([0, 0, 0]);
    const all: number[] = [];
    for (const k of kids) {
      const uids = k.lines.map((l) => Number(l.split(" ")[1]));
      expect(uids).toHaveLength(25);
      // each process sees its own UIDs increase
      expect([...uids].sort((a, b) => a - b)).toEqual(uids);
      all.push(...uids);
    }
    expect(new Set(all).size).toBe(75);
    const store = createMaildirStore({ root: dir, defaultQuotaBytes: 1e9 });
    const s = await (await store.open("shared")).openMailbox("INBOX");
    expect(s.messages().map((m) => m.uid)).toEqual([...all].sort((a, b) => a - b));
    // every UID maps to the message its appender was told about
    for (const k of kids) {
      for (const line of k.lines.slice(0, 5)) {
        const [, uid, subject] = line.split(" ");
        expect((await s.read(Number(uid))).toString()).toContain(`Subject: ${subject}\r\n`);
      }
    }
    await s.close();
    await store.close();
  });

  it("a session in this process hears about deliveries made by another process", async () => {
    const store = createMaildirStore({ root: dir, defaultQuotaBytes: 1e9 });
    const user = await store.open("watched");
    const s = await user.openMailbox("INBOX");
    let fired = 0;
    s.onChange(() => {
      fired += 1;
    });
    const k = child([dir, "watched", "3", "100", "w"]);
    expect(await k.done).toBe(0);
    const deadline = Date.now() + 3000;
    while (fired === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(fired).toBeGreaterThan(0);
    const changes = await s.sync();
    expect(changes.added.map((m) => m.uid)).toEqual(k.lines.map((l) => Number(l.split(" ")[1])));
    expect(s.recent().size).toBe(3);
    await s.close();
    await store.close();
  });

  it("kill -9 mid-write leaves only whole messages in new/ and cur/ and a usable index", async () => {
    const k = child([dir, "crash", "100000", "300000", "c"]);
    // let it get going, then kill it at an arbitrary point
    await new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        if (k.lines.length >= 8) {
          clearInterval(timer);
          resolve();
        }
      }, 5);
    });
    k.proc.kill("SIGKILL");
    await k.done;
    const acknowledged = k.lines.map((l) => l.split(" ")[2]);
    const root = join(dir, "crash");
    for (const sub of ["new", "cur"]) {
      for (const name of await readdir(join(root, sub))) {
        const text = await readFile(join(root, sub, name), "latin1");
        const len = Number(/X-Len: (\d+)/.exec(text)?.[1]);
        expect(text.length, name).toBe(text.indexOf("\r\n\r\n") + 4 + len);
        expect(Number(/,S=(\d+)/.exec(name)?.[1])).toBe(text.length);
      }
    }
    const store = createMaildirStore({ root: dir, defaultQuotaBytes: 1e12 });
    const user = await store.open("crash");
    const s = await user.openMailbox("INBOX");
    // the UIDVALIDITY every append was acknowledged with still holds (RFC 3501 §2.3.1.1)
    expect(new Set(k.lines.map((l) => Number(l.split(" ")[3])))).toEqual(new Set([s.uidValidity]));
    // each append took a MODSEQ; none of them is given out again
    expect(s.highestModseq()).toBeGreaterThanOrEqual(k.lines.length);
    const subjects = await Promise.all(
      s.messages().map(async (m) => /Subject: (\S+)/.exec((await s.read(m.uid)).toString("latin1"))?.[1]),
    );
    // nothing acknowledged is lost; the index was not damaged (UIDs 1..n kept)
    for (const subject of acknowledged) expect(subjects).toContain(subject);
    expect(s.messages().map((m) => m.uid)).toEqual(s.messages().map((_, i) => i + 1));
    // the index survived: every acknowledged UID still names the message it was given to
    for (const line of k.lines) {
      const [, uid, subject] = line.split(" ");
      expect((await s.read(Number(uid))).toString("latin1")).toContain(`Subject: ${subject}\r\n`);
    }
    const index = await readFile(join(root, "mailinfra-index"), "utf8");
    expect(index.startsWith("mailinfra-index 2 ")).toBe(true);
    // a lock left behind by the dead process is broken, the mailbox stays writable
    await user.append("INBOX", Buffer.from("Subject: after\r\n\r\nok\r\n"));
    await s.close();
    await store.close();
  });

  it("kill -9 between flag changes keeps the acknowledged flags, MODSEQ, HIGHESTMODSEQ and UIDVALIDITY", async () => {
    const k = child([dir, "flagcrash"], FLAGS_CHILD);
    // kill at an arbitrary point once some appends and flag changes are acknowledged
    const target = 60 + Math.floor(Math.random() * 40);
    await new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        if (k.lines.filter((l) => l.startsWith("ok ")).length >= target) {
          clearInterval(timer);
          resolve();
        }
      }, 1);
    });
    k.proc.kill("SIGKILL");
    await k.done;
    // what the child was told, step by step; the last "op" without its "ok" was in flight
    const acked = new Map<number, { flags: string; modseq: number }>();
    let highest = 0;
    let uidValidity = 0;
    let inFlight: { uid: string; flags: string } | undefined;
    for (const line of k.lines) {
      const f = line.split(" ");
      if (f[0] === "op") inFlight = { uid: f[2]!, flags: f[3]! };
      else if (f[0] === "ok") {
        inFlight = undefined;
        const modseq = Number(f[4]);
        const prior = acked.get(Number(f[2]));
        // MODSEQ grows with each change the child saw (RFC 7162 §3.1.1)
        if (prior && prior.flags !== f[3]) expect(modseq).toBeGreaterThan(prior.modseq);
        acked.set(Number(f[2]), { flags: f[3]!, modseq });
        expect(Number(f[5])).toBeGreaterThanOrEqual(highest);
        highest = Number(f[5]);
        if (uidValidity) expect(Number(f[6])).toBe(uidValidity);
        uidValidity = Number(f[6]);
      }
    }
    expect(acked.size).toBeGreaterThan(10);

    const store = createMaildirStore({ root: dir, defaultQuotaBytes: 1e12 });
    const user = await store.open("flagcrash");
    // read-only first: looking must not change what is there
    const ro = await user.openMailbox("INBOX", { readOnly: true });
    expect(ro.uidValidity).toBe(uidValidity);
    expect(ro.highestModseq()).toBeGreaterThanOrEqual(highest);
    const show = (flags: Set<string>) => [...flags].sort().join(",") || "-";
    const now = new Map(ro.messages().map((m) => [m.uid, m]));
    for (const [uid, want] of acked) {
      const m = now.get(uid);
      expect(m, `uid ${uid}`).toBeDefined();
      if (inFlight?.uid === String(uid)) {
        // the change in flight may or may not have landed, but wholly, and never backwards
        expect([want.flags, inFlight.flags], `uid ${uid}`).toContain(show(m!.flags));
        expect(m!.modseq, `uid ${uid}`).toBeGreaterThanOrEqual(want.modseq);
      } else {
        expect(show(m!.flags), `uid ${uid}`).toBe(want.flags);
        expect(m!.modseq, `uid ${uid}`).toBe(want.modseq);
      }
      expect(m!.modseq).toBeLessThanOrEqual(ro.highestModseq());
    }
    // the next change gets a MODSEQ above every one given out before the kill
    const rw = await user.openMailbox("INBOX");
    const first = [...acked.keys()][0]!;
    const r = await rw.setFlags([first], "add", ["$after"]);
    expect(r.changed[0]?.modseq).toBeGreaterThan(Math.max(highest, ro.highestModseq()));
    expect(rw.uidValidity).toBe(uidValidity);
    await ro.close();
    await rw.close();
    await store.close();
  });
});
