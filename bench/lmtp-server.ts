// Our LMTP service in its own process for bench/lmtp.ts (so the load generator
// does not share its event loop). The directory is static, like Dovecot's
// static userdb in the comparison: every user@bench.example exists.
// Prints "port <n>" once listening.
import pino from "pino";
import { Registry } from "prom-client";
import { RuntimeConfigSchema } from "../runtime/src/config/schema.js";
import type { Account, Directory } from "../runtime/src/directory/types.js";
import { startLmtp } from "../runtime/src/lmtp/service.js";
import { createMaildirStore } from "../runtime/src/store/index.js";

const root = process.argv[2];
if (!root) throw new Error("usage: lmtp-server.ts <mail root>");

const directory: Directory = {
  async findByAddress(address: string): Promise<Account | null> {
    const m = /^([a-z0-9]+)@bench\.example$/i.exec(address);
    if (!m) return null;
    const uid = (m[1] as string).toLowerCase();
    return {
      uid,
      dn: `uid=${uid},dc=bench`,
      mail: address.toLowerCase(),
      addresses: [address.toLowerCase()],
    };
  },
  async findByLogin() {
    return null;
  },
  async authenticate() {
    return null;
  },
  async close() {},
};

const config = RuntimeConfigSchema.parse({
  host: { name: "bench.example", roles: ["store"] },
  store: { root, fsync: true },
  lmtp: { listen: ["127.0.0.1:0"] },
});
const store = createMaildirStore({ root, fsync: true, defaultQuotaBytes: config.store!.defaultQuotaBytes });
const service = await startLmtp({
  config,
  logger: pino({ level: "silent" }),
  metrics: new Registry(),
  directory,
  store,
});
process.stdout.write(`port ${service.addresses()[0]?.split(":").pop()}\n`);
process.on("SIGTERM", () => {
  void service.drain(1000).then(() => process.exit(0));
});
