// RFC 2595 §4 STLS
import type { Pop3Command } from "./types.js";

export const STLS: Pop3Command = {
  name: "STLS",
  states: ["AUTHORIZATION"],
  minArgs: 0,
  maxArgs: 0,
  async handle(s) {
    if (!s.ctx.secureContext) return s.err("TLS is not available");
    if (s.secure) return s.bad("Already using TLS");
    await s.startTls();
  },
};
