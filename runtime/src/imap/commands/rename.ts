/** RENAME (RFC 3501 §6.3.5): renaming INBOX moves its messages. */
import { AUTHENTICATED, command } from "./types.js";

export default command({
  states: AUTHENTICATED,
  parse(args) {
    const from = args.mailbox("existing mailbox name");
    const to = args.mailbox("new mailbox name").replace(/\/+$/, "");
    args.end();
    return { from, to };
  },
  async handler(s, a) {
    await s.user!.renameMailbox(a.from, a.to);
    return undefined;
  },
});
