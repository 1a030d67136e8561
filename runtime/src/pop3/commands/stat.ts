// RFC 1939 §5 STAT: count and octets of the messages not marked deleted.
import type { Pop3Command } from "./types.js";

export const STAT: Pop3Command = {
  name: "STAT",
  states: ["TRANSACTION"],
  minArgs: 0,
  maxArgs: 0,
  async handle(s) {
    const live = s.messages.filter((m) => !m.deleted);
    s.ok(`${live.length} ${live.reduce((n, m) => n + m.meta.size, 0)}`);
  },
};
