/**
 * SELECT and EXAMINE (RFC 3501 §6.3.1, §6.3.2), with CONDSTORE's
 * (CONDSTORE) parameter and HIGHESTMODSEQ (RFC 7162 §3.1.8, §3.2.5).
 */
import { StoreError } from "../../store/types.js";
import { no } from "../errors.js";
import { ArgumentError, nodeText } from "../wire/args.js";
import { encodeMailboxName } from "../wire/utf7.js";
import { mailboxFlags, PERMANENT_SYSTEM_FLAGS } from "./helpers.js";
import { AUTHENTICATED, command } from "./types.js";

function make(readOnly: boolean) {
  return command({
    states: AUTHENTICATED,
    parse(args) {
      const mailbox = args.mailbox();
      let condstore = false;
      if (args.remaining > 0) {
        for (const p of args.list("select parameters").items) {
          const name = nodeText(p).toUpperCase();
          if (name === "CONDSTORE") condstore = true;
          else throw new ArgumentError(`unknown SELECT parameter ${name.slice(0, 30)}`);
        }
      }
      args.end();
      return { mailbox, condstore };
    },
    async handler(s, a) {
      // RFC 3501 §6.3.1: a failed SELECT leaves no mailbox selected
      await s.unselect();
      let mb: Awaited<ReturnType<NonNullable<typeof s.user>["openMailbox"]>>;
      try {
        mb = await s.user!.openMailbox(a.mailbox, { readOnly });
      } catch (err) {
        if (err instanceof StoreError && err.code === "BADNAME")
          throw no("Mailbox does not exist", "NONEXISTENT");
        throw err;
      }
      if (a.condstore) s.condstore = true;
      await s.select(mb);
      const messages = mb.messages();
      const flags = mailboxFlags(s).join(" ");
      s.writeLine(`* FLAGS (${flags})`);
      s.writeLine(
        readOnly
          ? "* OK [PERMANENTFLAGS ()] Read-only mailbox"
          : `* OK [PERMANENTFLAGS (${[...new Set([...PERMANENT_SYSTEM_FLAGS, ...mailboxFlags(s)])].join(" ")} \\*)] Flags permitted`,
      );
      s.writeLine(`* ${messages.length} EXISTS`);
      s.writeLine(`* ${mb.recent().size} RECENT`);
      const firstUnseen = messages.findIndex((m) => !m.flags.has("\\Seen"));
      if (firstUnseen >= 0) s.writeLine(`* OK [UNSEEN ${firstUnseen + 1}] First unseen`);
      s.writeLine(`* OK [UIDVALIDITY ${mb.uidValidity}] UIDs valid`);
      s.writeLine(`* OK [UIDNEXT ${mb.uidNext()}] Predicted next UID`);
      s.writeLine(`* OK [HIGHESTMODSEQ ${mb.highestModseq()}] Highest`);
      s.log.debug({ mailbox: encodeMailboxName(a.mailbox) }, "selected");
      const rw = readOnly || mb.readOnly ? "READ-ONLY" : "READ-WRITE";
      return { code: rw, text: `${readOnly ? "EXAMINE" : "SELECT"} completed` };
    },
  });
}

export const select = make(false);
export const examine = make(true);
