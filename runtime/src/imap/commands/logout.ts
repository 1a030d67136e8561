/** LOGOUT (RFC 3501 §6.1.3): BYE, then the tagged OK, then close. */
import { ANY, command } from "./types.js";

export default command({
  states: ANY,
  parse: (args) => args.end(),
  async handler(s) {
    s.writeLine("* BYE Logging out");
    return { after: () => s.end() };
  },
});
