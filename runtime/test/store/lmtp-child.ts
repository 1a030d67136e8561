// Child process for the concurrency tests: an LMTP server on its own store
// instance (a separate process, as on the store host), accounts in memory.
// Prints "port <n> pid <pid>" once listening; stops on SIGTERM.
import { pino } from "pino";
import { createLmtpServer } from "../../src/lmtp/server.js";
import { createMaildirStore } from "../../src/store/index.js";
import { memoryDirectory } from "../imap/support.js";

const [root] = process.argv.slice(2) as [string];
const store = createMaildirStore({ root, fsync: true, defaultQuotaBytes: 50 * 1024 ** 2 });
const server = createLmtpServer({
  hostname: "store.test",
  directory: memoryDirectory(),
  store,
  logger: pino({ level: "silent" }),
  maxMessageBytes: 1024 * 1024,
});
server.listen(0, "127.0.0.1", () => {
  const address = server.server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  process.stdout.write(`port ${port} pid ${process.pid}\n`);
});
process.on("SIGTERM", () => {
  server.close(() => {
    void store.close().then(() => process.exit(0));
  });
});
