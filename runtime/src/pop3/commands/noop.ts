// RFC 1939 §5 NOOP
import type { Pop3Command } from "./types.js";

export const NOOP: Pop3Command = {
  name: "NOOP",
  states: ["TRANSACTION"],
  minArgs: 0,
  maxArgs: 0,
  async handle(s) {
    s.ok("");
  },
};
