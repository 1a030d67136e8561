/**
 * AUTHENTICATE PLAIN (RFC 3501 §6.2.2, RFC 4616), with SASL-IR's initial
 * response (RFC 4959; "=" is an empty one). "*" cancels (BAD).
 */
import { bad, no } from "../errors.js";
import { authenticate } from "./auth.js";
import { command, NOT_AUTHENTICATED } from "./types.js";

function decode(text: string): Buffer {
  if (text === "=") return Buffer.alloc(0);
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) throw bad("Invalid base64");
  return Buffer.from(text, "base64");
}

export default command({
  states: NOT_AUTHENTICATED,
  parse(args) {
    const mechanism = args.atom("SASL mechanism");
    const initial = args.remaining > 0 ? args.astring("initial response") : undefined;
    args.end();
    return { mechanism, initial };
  },
  async handler(s, a) {
    if (a.mechanism !== "PLAIN") throw no("Unsupported authentication mechanism", "CANNOT");
    if (s.loginDisabled()) throw no("Log in after STARTTLS", "PRIVACYREQUIRED");
    let response = a.initial;
    if (response === undefined) {
      s.writeLine("+ ");
      s.push();
      const line = await s.readContinuation();
      if (line === null) throw bad("Connection closed");
      response = line.toString("latin1").trim();
    }
    if (response === "*") throw bad("Authentication cancelled");
    const parts = decode(response).toString("utf8").split("\0");
    if (parts.length !== 3) throw bad("Malformed PLAIN response");
    const [authzid, authcid, password] = parts as [string, string, string];
    if (authzid && authzid !== authcid) throw no("Authorization identity not allowed", "AUTHORIZATIONFAILED");
    return authenticate(s, authcid, password);
  },
});
