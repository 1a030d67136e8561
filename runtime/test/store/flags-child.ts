// Child process for the kill -9 index test: appends messages and changes their
// flags in a loop. Before each step it prints "op <n> <uid> <flags if applied>"
// (uid "new" for an append), after it "ok <n> <uid> <flags> <modseq>
// <highestmodseq> <uidvalidity>", flags sorted and joined by ",", "-" for none.
// Writes to a pipe are synchronous on Linux: a line printed is a line the
// parent gets, even when the process is killed right after.
import { createMaildirStore } from "../../src/store/index.js";

const [root, user] = process.argv.slice(2) as [string, string];
const store = createMaildirStore({ root, fsync: true, defaultQuotaBytes: 10 * 1024 ** 3 });
const account = await store.open(user);
const inbox = await account.openMailbox("INBOX");
const flagsOf = new Map<number, Set<string>>();
const show = (flags: Set<string>) => [...flags].sort().join(",") || "-";
let n = 0;

async function ack(uid: number): Promise<void> {
  await inbox.sync();
  const meta = inbox.messages().find((m) => m.uid === uid);
  if (!meta) throw new Error(`uid ${uid} missing`);
  flagsOf.set(uid, new Set(meta.flags));
  const status = await account.status("INBOX");
  process.stdout.write(
    `ok ${n} ${uid} ${show(meta.flags)} ${meta.modseq} ${status.highestModseq} ${status.uidValidity}\n`,
  );
  n += 1;
}

async function change(uid: number, op: "add" | "remove" | "replace", flags: string[]): Promise<void> {
  const now = flagsOf.get(uid)!;
  const after =
    op === "replace"
      ? new Set(flags)
      : op === "add"
        ? new Set([...now, ...flags])
        : new Set([...now].filter((f) => !flags.includes(f)));
  process.stdout.write(`op ${n} ${uid} ${show(after)}\n`);
  await inbox.setFlags([uid], op, flags);
  await ack(uid);
}

const uids: number[] = [];
for (let i = 0; ; i++) {
  process.stdout.write(`op ${n} new -\n`);
  const { uid } = await account.append("INBOX", Buffer.from(`Subject: m-${i}\r\n\r\nbody ${i}\r\n`));
  uids.push(uid);
  await ack(uid);
  await change(uid, "add", ["\\Seen", `$k${i % 4}`]);
  if (i >= 2) await change(uids[i - 2]!, "replace", ["\\Flagged", "\\Answered"]);
  if (i >= 3) await change(uids[i - 3]!, "remove", ["\\Answered"]);
}
