/** CLOSE (RFC 3501 §6.4.2): silent expunge when read-write, then back to authenticated. */
import { command, SELECTED } from "./types.js";

export default command({
  states: SELECTED,
  parse: (args) => args.end(),
  async handler(s) {
    const mb = s.mailbox!;
    if (!mb.readOnly) await mb.expunge();
    await s.unselect();
    return undefined;
  },
});
