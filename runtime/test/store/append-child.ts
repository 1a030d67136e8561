// Child process for the multi-process store tests: appends `count` messages
// of `size` bytes and prints "uid <n> <tag>-<i> <uidvalidity>" after each one resolved.
import { createMaildirStore } from "../../src/store/index.js";

const [root, user, count, size, tag] = process.argv.slice(2) as [string, string, string, string, string];
const store = createMaildirStore({ root, fsync: true, defaultQuotaBytes: 10 * 1024 ** 3 });
const mailbox = await store.open(user);
for (let i = 0; i < Number(count); i++) {
  const header = `Subject: ${tag}-${i}\r\nX-Len: ${size}\r\n\r\n`;
  const body = Buffer.alloc(Number(size), "x".charCodeAt(0));
  const { uid, uidValidity } = await mailbox.append("INBOX", Buffer.concat([Buffer.from(header), body]));
  process.stdout.write(`uid ${uid} ${tag}-${i} ${uidValidity}\n`);
}
await store.close();
