/** NOOP (RFC 3501 §6.1.2): also the poll for mailbox updates. */
import { ANY, command } from "./types.js";

export default command({
  states: ANY,
  forceSync: true,
  parse: (args) => args.end(),
  async handler() {
    return undefined;
  },
});
