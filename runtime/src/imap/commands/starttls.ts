/** STARTTLS (RFC 3501 §6.2.1): TLS starts right after the tagged OK. */
import { bad } from "../errors.js";
import { command, NOT_AUTHENTICATED } from "./types.js";

export default command({
  states: NOT_AUTHENTICATED,
  parse: (args) => args.end(),
  async handler(s) {
    if (!s.server.tls) throw bad("STARTTLS is not available");
    if (s.secure) throw bad("TLS is already active");
    return { text: "Begin TLS negotiation now", after: () => s.startTls() };
  },
});
