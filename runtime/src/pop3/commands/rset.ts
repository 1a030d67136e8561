// RFC 1939 §5 RSET: unmark every deleted message.
import type { Pop3Command } from "./types.js";

export const RSET: Pop3Command = {
  name: "RSET",
  states: ["TRANSACTION"],
  minArgs: 0,
  maxArgs: 0,
  async handle(s) {
    for (const m of s.messages) m.deleted = false;
    s.ok(`${s.messages.length} messages`);
  },
};
