/** CREATE (RFC 3501 §6.3.3), with CREATE-SPECIAL-USE's USE (…) (RFC 6154 §3). */
import { StoreError } from "../../store/types.js";
import { bad, no } from "../errors.js";
import { ArgumentError, nodeText } from "../wire/args.js";
import { AUTHENTICATED, command } from "./types.js";

export default command({
  states: AUTHENTICATED,
  parse(args) {
    // a trailing delimiter only says the client plans children (RFC 3501 §6.3.3)
    const mailbox = args.mailbox().replace(/\/+$/, "");
    let specialUse: string | undefined;
    if (args.remaining > 0) {
      const params = args.list("CREATE parameters").items;
      for (let i = 0; i < params.length; i += 2) {
        if (nodeText(params[i]!).toUpperCase() !== "USE") throw new ArgumentError("unknown CREATE parameter");
        const uses = params[i + 1];
        if (uses?.type !== "list" || uses.items.length !== 1)
          throw new ArgumentError("USE takes one special-use flag");
        specialUse = nodeText(uses.items[0]!);
      }
    }
    args.end();
    return { mailbox, specialUse };
  },
  async handler(s, a) {
    if (a.mailbox === "") throw bad("Empty mailbox name");
    if (a.mailbox === "INBOX") throw no("INBOX always exists", "ALREADYEXISTS");
    // The mailbox itself first: a name or USE the store refuses leaves nothing behind.
    await s.user!.createMailbox(a.mailbox, a.specialUse ? { specialUse: a.specialUse } : undefined);
    // RFC 3501 §6.3.3: superior hierarchy names are created as needed
    const parts = a.mailbox.split("/");
    for (let i = 1; i < parts.length; i++) {
      await s.user!.createMailbox(parts.slice(0, i).join("/")).catch((err: unknown) => {
        if (!(err instanceof StoreError && err.code === "ALREADYEXISTS")) throw err;
      });
    }
    return undefined;
  },
});
