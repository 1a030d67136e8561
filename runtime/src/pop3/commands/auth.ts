// RFC 5034 AUTH mechanism [initial-response]; only PLAIN (RFC 4616), only after
// TLS when logins are disabled without it. AUTH alone lists the mechanisms
// (what Outlook and Thunderbird send before CAPA existed).
import type { Pop3Session } from "../session.js";
import type { Pop3Command } from "./types.js";

async function plain(s: Pop3Session, response: string): Promise<void> {
  if (response === "*") return s.err("Authentication cancelled"); // RFC 5034 §4
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(response) || response.length % 4 !== 0) {
    return s.err("Invalid base64 in the SASL response");
  }
  const parts = Buffer.from(response, "base64").toString("utf8").split("\u0000");
  if (parts.length !== 3) return s.err("Malformed PLAIN response");
  const [authzid, authcid, password] = parts as [string, string, string];
  // No proxy logins: the authorization identity, when given, must be the user.
  if (authzid !== "" && authzid !== authcid) return s.err("Proxy authorization not permitted", "AUTH");
  if (authcid === "" || password === "") return s.err("Invalid login or password", "AUTH");
  await s.login(authcid, password);
}

export const AUTH: Pop3Command = {
  name: "AUTH",
  states: ["AUTHORIZATION"],
  minArgs: 0,
  maxArgs: 2,
  async handle(s, { args }) {
    if (args.length === 0) {
      await s.write("+OK\r\nPLAIN\r\n.\r\n");
      return;
    }
    if (s.ctx.loginDisabledWithoutTls && !s.secure) return s.err("Use STLS first", "AUTH");
    if ((args[0] as string).toUpperCase() !== "PLAIN") return s.err("Unsupported mechanism");
    const initial = args[1];
    if (initial !== undefined) return plain(s, initial === "=" ? "" : initial);
    await s.write("+ \r\n");
    s.continuation = (line) => plain(s, line);
  },
};
