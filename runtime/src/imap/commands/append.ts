/**
 * APPEND (RFC 3501 §6.3.11) with APPENDUID (RFC 4315 §3) and APPENDLIMIT
 * (RFC 7889: larger messages get [TOOBIG]; the framer refuses literals above
 * the limit before they are sent). The store makes the message durable
 * before it answers; a client that disconnects mid-literal never reaches here.
 */
import { StoreError } from "../../store/types.js";
import { no } from "../errors.js";
import { ArgumentError } from "../wire/args.js";
import { parseDateTime, parseFlags } from "./helpers.js";
import { AUTHENTICATED, command } from "./types.js";

export default command({
  states: AUTHENTICATED,
  parse(args) {
    const mailbox = args.mailbox();
    let flags: string[] | undefined;
    let date: Date | undefined;
    if (args.peek()?.type === "list") flags = parseFlags(args.list("flag list").items);
    const maybeDate = args.peek();
    if (maybeDate?.type === "string" && !maybeDate.literal) {
      date = parseDateTime(maybeDate.value.toString("latin1"));
      args.next("date-time");
    }
    const msg = args.next("message literal");
    if (msg.type !== "string") throw new ArgumentError("expected the message as a literal");
    args.end();
    return { mailbox, flags, date, content: msg.value };
  },
  async handler(s, a) {
    if (a.content.length === 0) throw no("Empty message", "CANNOT");
    if (a.content.length > s.server.limits.maxLiteralBytes) throw no("Message too large", "TOOBIG");
    let r: Awaited<ReturnType<NonNullable<typeof s.user>["append"]>>;
    try {
      r = await s.user!.append(a.mailbox, Buffer.from(a.content), {
        ...(a.flags ? { flags: a.flags } : {}),
        ...(a.date ? { internalDate: a.date } : {}),
      });
    } catch (err) {
      // RFC 3501 §6.3.11: [TRYCREATE] when the mailbox is missing but could be created
      if (err instanceof StoreError && err.code === "NONEXISTENT")
        throw no("Mailbox does not exist", "TRYCREATE");
      throw err;
    }
    // our own append shows up in the selected mailbox at once
    if (s.mailbox?.name === a.mailbox) await s.sendUpdates(true, true);
    return { code: `APPENDUID ${r.uidValidity} ${r.uid}`, text: "APPEND completed" };
  },
});
