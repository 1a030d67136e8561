/** CHECK (RFC 3501 §6.4.1): the store is always checkpointed; acts like NOOP. */
import { command, SELECTED } from "./types.js";

export default command({
  states: SELECTED,
  forceSync: true,
  parse: (args) => args.end(),
  async handler() {
    return undefined;
  },
});
