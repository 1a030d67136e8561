// RFC 1939 §7 PASS string — the rest of the line: passwords may contain spaces.
import type { Pop3Command } from "./types.js";

export const PASS: Pop3Command = {
  name: "PASS",
  states: ["AUTHORIZATION"],
  minArgs: 1,
  maxArgs: Number.POSITIVE_INFINITY,
  async handle(s, { rest }) {
    const user = s.pendingUser;
    s.pendingUser = null;
    if (user === null) return s.bad("USER first");
    await s.login(user, rest);
  },
};
