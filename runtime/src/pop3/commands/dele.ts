// RFC 1939 §5 DELE msg: marked only; removed in the UPDATE state.
import type { Pop3Command } from "./types.js";

export const DELE: Pop3Command = {
  name: "DELE",
  states: ["TRANSACTION"],
  minArgs: 1,
  maxArgs: 1,
  async handle(s, { args }) {
    const m = s.message(args[0]);
    if (!m) return s.err("No such message");
    m.deleted = true;
    s.ok(`Message ${args[0]} deleted`);
  },
};
