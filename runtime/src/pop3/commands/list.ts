// RFC 1939 §5 LIST [msg]
import type { Pop3Command } from "./types.js";

export const LIST: Pop3Command = {
  name: "LIST",
  states: ["TRANSACTION"],
  minArgs: 0,
  maxArgs: 1,
  async handle(s, { args }) {
    if (args.length === 1) {
      const m = s.message(args[0]);
      if (!m) return s.err("No such message");
      return s.ok(`${args[0]} ${m.meta.size}`);
    }
    const lines = s.messages.flatMap((m, i) => (m.deleted ? [] : [`${i + 1} ${m.meta.size}`]));
    await s.write(`+OK ${lines.length} messages\r\n${lines.map((l) => `${l}\r\n`).join("")}.\r\n`);
  },
};
