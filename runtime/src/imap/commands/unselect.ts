/** UNSELECT (RFC 3691): like CLOSE without the expunge. */
import { command, SELECTED } from "./types.js";

export default command({
  states: SELECTED,
  parse: (args) => args.end(),
  async handler(s) {
    await s.unselect();
    return undefined;
  },
});
