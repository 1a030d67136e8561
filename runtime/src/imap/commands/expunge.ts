/** EXPUNGE (RFC 3501 §6.4.3) and UID EXPUNGE (RFC 4315 §2.1). */
import { no } from "../errors.js";
import type { SeqRange } from "../wire/sequence.js";
import { resolveSet } from "./helpers.js";
import { command, SELECTED } from "./types.js";

export default command({
  states: SELECTED,
  uid: true,
  parse(args, call) {
    const set: SeqRange[] | undefined = call.uid ? args.sequenceSet("UID set") : undefined;
    args.end();
    return set;
  },
  async handler(s, set) {
    const mb = s.mailbox!;
    if (mb.readOnly) throw no("Mailbox is read-only", "NOPERM");
    // the store expunges only messages this session's snapshot holds, so the
    // numbers below are those the client knows (RFC 3501 §7.4.1)
    const uids = set ? resolveSet(s, set, true).map((t) => t.meta.uid) : undefined;
    const gone = await mb.expunge(uids);
    s.reportExpunged(gone);
    return undefined;
  },
});
