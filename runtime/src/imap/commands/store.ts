/**
 * STORE and UID STORE (RFC 3501 §6.4.6) with CONDSTORE's UNCHANGEDSINCE and
 * [MODIFIED] (RFC 7162 §3.1.3).
 */
import type { FlagOperation } from "../../store/types.js";
import { no } from "../errors.js";
import { ArgumentError, nodeText } from "../wire/args.js";
import type { Value } from "../wire/compiler.js";
import { compile } from "../wire/compiler.js";
import type { Node } from "../wire/parser.js";
import { formatSequenceSet } from "../wire/sequence.js";
import { parseFlags, resolveSet } from "./helpers.js";
import { command, SELECTED } from "./types.js";

export default command({
  states: SELECTED,
  uid: true,
  holdExpunges: true,
  parse(args, call) {
    const set = args.sequenceSet(call.uid ? "UID set" : "sequence set");
    let unchangedSince: number | undefined;
    if (args.peek()?.type === "list") {
      const mods = args.list("store modifiers").items;
      for (let i = 0; i < mods.length; i += 2) {
        if (nodeText(mods[i]!).toUpperCase() !== "UNCHANGEDSINCE")
          throw new ArgumentError("unknown STORE modifier");
        const v = mods[i + 1];
        if (v?.type !== "atom" || !/^\d{1,20}$/.test(v.value))
          throw new ArgumentError("UNCHANGEDSINCE needs a number");
        unchangedSince = Number(v.value);
      }
    }
    const item = args.atom("store item");
    const m = /^([+-]?)FLAGS(\.SILENT)?$/.exec(item);
    if (!m) throw new ArgumentError("expected FLAGS, +FLAGS or -FLAGS");
    const op: FlagOperation = m[1] === "+" ? "add" : m[1] === "-" ? "remove" : "replace";
    const nodes: Node[] = [];
    if (args.peek()?.type === "list") nodes.push(...args.list("flags").items);
    else while (args.remaining > 0) nodes.push(args.next("flag"));
    args.end();
    return { set, op, silent: Boolean(m[2]), flags: parseFlags(nodes), unchangedSince };
  },
  async handler(s, a, call) {
    const mb = s.mailbox!;
    if (mb.readOnly) throw no("Mailbox is read-only", "NOPERM");
    if (a.unchangedSince !== undefined) s.condstore = true;
    const targets = resolveSet(s, a.set, call.uid);
    const options = a.unchangedSince !== undefined ? { unchangedSince: a.unchangedSince } : undefined;
    const result = await mb.setFlags(
      targets.map((t) => t.meta.uid),
      a.op,
      a.flags,
      options,
    );
    const modified = new Set(result.modified);
    const changed = new Set(result.changed.map((m) => m.uid));
    const current = new Map(mb.messages().map((m) => [m.uid, m]));
    for (const t of targets) {
      if (modified.has(t.meta.uid)) continue;
      // RFC 7162 §3.1.3: with CONDSTORE, changed messages are reported even with .SILENT
      if (a.silent && !(s.condstore && changed.has(t.meta.uid))) continue;
      const meta = current.get(t.meta.uid);
      if (!meta) continue;
      const items: Value[] = [];
      if (!a.silent) items.push({ atom: "FLAGS" }, s.flagList(meta.flags, meta.uid));
      if (call.uid) items.push({ atom: "UID" }, meta.uid);
      if (s.condstore) items.push({ atom: "MODSEQ" }, [meta.modseq]);
      s.write(Buffer.from(`* ${t.seq} FETCH ${compile([items]).toString("latin1")}\r\n`, "latin1"));
    }
    if (modified.size > 0) {
      const ids = targets.filter((t) => modified.has(t.meta.uid)).map((t) => (call.uid ? t.meta.uid : t.seq));
      return {
        code: `MODIFIED ${formatSequenceSet(ids)}`,
        text: "Conditional STORE failed for some messages",
      };
    }
    return undefined;
  },
});
