// RFC 1939 §7 USER name
import { MAX_ARG_CHARS } from "../limits.js";
import type { Pop3Command } from "./types.js";

export const USER: Pop3Command = {
  name: "USER",
  states: ["AUTHORIZATION"],
  minArgs: 1,
  maxArgs: 1,
  async handle(s, { args }) {
    const name = args[0] as string;
    if (s.ctx.loginDisabledWithoutTls && !s.secure) return s.err("Use STLS first", "AUTH");
    // Addresses may be longer than RFC 1939's 40 characters; refuse only the absurd.
    if (name.length === 0 || name.length > MAX_ARG_CHARS * 8) return s.bad("Invalid user name");
    s.pendingUser = name;
    s.ok("Send your password");
  },
};
