// RFC 1939 §5 DELE msg: marked only; removed in the UPDATE state.
import { findMessage } from "./message.js";
import type { Pop3Command } from "./types.js";

export const DELE: Pop3Command = {
  name: "DELE",
  states: ["TRANSACTION"],
  minArgs: 1,
  maxArgs: 1,
  async handle(s, { args }) {
    const m = findMessage(s, args[0]);
    if (!m) return;
    m.deleted = true;
    s.ok(`Message ${args[0]} deleted`);
  },
};
