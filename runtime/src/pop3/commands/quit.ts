// RFC 1939 §4 / §6 QUIT: in TRANSACTION, enter UPDATE and remove what was marked.
import type { Pop3Command } from "./types.js";

export const QUIT: Pop3Command = {
  name: "QUIT",
  states: ["AUTHORIZATION", "TRANSACTION"],
  minArgs: 0,
  maxArgs: 0,
  async handle(s) {
    if (s.state === "TRANSACTION" && !(await s.update())) {
      s.err("Some deleted messages not removed", "SYS/TEMP");
    } else {
      s.ok("Bye");
    }
    s.end();
  },
};
