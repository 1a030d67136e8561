/** IDLE (RFC 2177): untagged updates as they happen, until the client sends DONE. */
import { bad } from "../errors.js";
import { AUTHENTICATED, command } from "./types.js";

export default command({
  states: AUTHENTICATED,
  parse: (args) => args.end(),
  async handler(s) {
    const line = await s.idle();
    if (line === null) return undefined;
    if (line.toString("latin1").trim().toUpperCase() !== "DONE") throw bad("Expected DONE");
    return { text: "IDLE terminated" };
  },
});
