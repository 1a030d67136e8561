// RFC 2449 §5 CAPA
import type { Pop3Command } from "./types.js";

export const CAPA: Pop3Command = {
  name: "CAPA",
  states: ["AUTHORIZATION", "TRANSACTION"],
  minArgs: 0,
  maxArgs: 0,
  async handle(s) {
    const caps = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "EXPIRE NEVER"];
    const loginAllowed = !s.ctx.loginDisabledWithoutTls || s.secure;
    if (s.state === "AUTHORIZATION") {
      if (loginAllowed) caps.push("USER", "SASL PLAIN");
      if (s.ctx.secureContext && !s.secure) caps.push("STLS");
    }
    caps.push("IMPLEMENTATION mailinfra");
    await s.write(`+OK Capability list follows\r\n${caps.join("\r\n")}\r\n.\r\n`);
  },
};
