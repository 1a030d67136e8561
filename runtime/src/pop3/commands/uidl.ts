// RFC 1939 §7 UIDL [msg]: the store's GUID, stable across sessions, restarts and failover.
import type { Pop3Command } from "./types.js";

export const UIDL: Pop3Command = {
  name: "UIDL",
  states: ["TRANSACTION"],
  minArgs: 0,
  maxArgs: 1,
  async handle(s, { args }) {
    if (args.length === 1) {
      const m = s.message(args[0]);
      if (!m) return s.err("No such message");
      return s.ok(`${args[0]} ${m.meta.guid}`);
    }
    const lines = s.messages.flatMap((m, i) => (m.deleted ? [] : [`${i + 1} ${m.meta.guid}`]));
    await s.write(`+OK\r\n${lines.map((l) => `${l}\r\n`).join("")}.\r\n`);
  },
};
