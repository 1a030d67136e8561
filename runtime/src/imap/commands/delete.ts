/** DELETE (RFC 3501 §6.3.4). */
import { no } from "../errors.js";
import { AUTHENTICATED, command } from "./types.js";

export default command({
  states: AUTHENTICATED,
  parse(args) {
    const mailbox = args.mailbox();
    args.end();
    return mailbox;
  },
  async handler(s, mailbox) {
    if (mailbox === "INBOX") throw no("INBOX cannot be deleted", "NOPERM");
    if (s.mailbox?.name === mailbox) await s.unselect();
    await s.user!.deleteMailbox(mailbox);
    return undefined;
  },
});
