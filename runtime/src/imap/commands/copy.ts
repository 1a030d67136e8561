/**
 * COPY (RFC 3501 §6.4.7) and MOVE (RFC 6851), UID forms included, with
 * COPYUID (RFC 4315 §3) and [TRYCREATE] for a missing target.
 */
import { StoreError } from "../../store/types.js";
import { no } from "../errors.js";
import { formatSequenceSet } from "../wire/sequence.js";
import { resolveSet } from "./helpers.js";
import { command, SELECTED } from "./types.js";

function make(move: boolean) {
  return command({
    states: SELECTED,
    uid: true,
    holdExpunges: !move,
    parse(args, call) {
      const set = args.sequenceSet(call.uid ? "UID set" : "sequence set");
      const mailbox = args.mailbox("target mailbox");
      args.end();
      return { set, mailbox };
    },
    async handler(s, a, call) {
      const mb = s.mailbox!;
      if (move && mb.readOnly) throw no("Mailbox is read-only", "NOPERM");
      const uids = resolveSet(s, a.set, call.uid).map((t) => t.meta.uid);
      if (uids.length === 0) return { text: "No messages" };
      let r: Awaited<ReturnType<typeof mb.copy>>;
      try {
        r = move ? await mb.move(uids, a.mailbox) : await mb.copy(uids, a.mailbox);
      } catch (err) {
        if (err instanceof StoreError && err.code === "NONEXISTENT")
          throw no("Mailbox does not exist", "TRYCREATE");
        throw err;
      }
      const map = [...r.mapping].sort((x, y) => x[0] - y[0]);
      const code = map.length
        ? `COPYUID ${r.uidValidity} ${formatSequenceSet(map.map((m) => m[0]))} ${formatSequenceSet(map.map((m) => m[1]))}`
        : undefined;
      if (move) {
        // RFC 6851 §4.3: COPYUID goes in an untagged OK before the EXPUNGEs
        if (code) s.writeLine(`* OK [${code}] Moved`);
        s.reportExpunged(map.map((m) => m[0]));
        return { text: "MOVE completed" };
      }
      return code ? { code, text: "COPY completed" } : { text: "COPY completed" };
    },
  });
}

export const copy = make(false);
export const move = make(true);
