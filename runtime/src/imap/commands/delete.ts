/** DELETE (RFC 3501 §6.3.4). */
import { no } from "../errors.js";
import { mailboxCommand } from "./types.js";

export default mailboxCommand(async (s, mailbox) => {
  if (mailbox === "INBOX") throw no("INBOX cannot be deleted", "NOPERM");
  if (s.mailbox?.name === mailbox) await s.unselect();
  await s.user!.deleteMailbox(mailbox);
});
