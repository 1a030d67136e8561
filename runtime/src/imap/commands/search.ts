/**
 * SEARCH and UID SEARCH (RFC 3501 §6.4.4), CHARSET-aware, with MODSEQ
 * (RFC 7162 §3.1.5) and ESEARCH's RETURN (MIN MAX ALL COUNT) (RFC 4731).
 */
import { StoreError } from "../../store/types.js";
import { no } from "../errors.js";
import { cacheKey, messageCache } from "../mime/cache.js";
import { makeMatcher, type SearchTarget } from "../search/evaluate.js";
import { BadCharsetError, needsBody, needsContent, SearchParser, usesModseq } from "../search/keys.js";
import { ArgumentError, nodeText } from "../wire/args.js";
import type { Node } from "../wire/parser.js";
import { formatSequenceSet } from "../wire/sequence.js";
import { command, SELECTED } from "./types.js";

/** Messages read at once when a search needs their content. */
const READ_PARALLEL = 8;

const RETURN_OPTIONS = new Set(["MIN", "MAX", "ALL", "COUNT"]);

export default command({
  states: SELECTED,
  uid: true,
  holdExpunges: true,
  parse(args) {
    let ret: string[] | undefined;
    const first = args.peek();
    if (first?.type === "atom" && first.value.toUpperCase() === "RETURN") {
      args.next("RETURN");
      ret = args.list("return options").items.map((n) => nodeText(n).toUpperCase());
      for (const r of ret)
        if (!RETURN_OPTIONS.has(r)) throw new ArgumentError(`unknown RETURN option ${r.slice(0, 20)}`);
      if (ret.length === 0) ret = ["ALL"];
    }
    let charset = "UTF-8";
    const cs = args.peek();
    if (cs?.type === "atom" && cs.value.toUpperCase() === "CHARSET") {
      args.next("CHARSET");
      charset = args.astring("charset name");
    }
    const nodes: Node[] = [];
    while (args.remaining > 0) nodes.push(args.next("search key"));
    try {
      return { ret, key: new SearchParser(nodes, charset).parseAll() };
    } catch (err) {
      if (err instanceof BadCharsetError)
        throw no("Unsupported charset", "BADCHARSET (UTF-8 US-ASCII ISO-8859-1)");
      throw err;
    }
  },
  async handler(s, a, call) {
    const mb = s.mailbox!;
    const messages = mb.messages();
    const recent = mb.recent();
    const maxUid = messages.length ? messages[messages.length - 1]!.uid : 0;
    const match = makeMatcher(a.key);
    const user = s.user!.user;
    const content = needsContent(a.key);
    const body = needsBody(a.key);
    const hits: Array<{ seq: number; uid: number; modseq: number }> = [];
    const targets: SearchTarget[] = messages.map((meta, i) => ({
      seq: i + 1,
      meta,
      recent: recent.has(meta.uid),
      maxSeq: messages.length,
      maxUid,
    }));
    for (let i = 0; i < targets.length; i += content ? READ_PARALLEL : targets.length) {
      const batch = targets.slice(i, i + (content ? READ_PARALLEL : targets.length));
      if (content) {
        await Promise.all(
          batch.map(async (t) => {
            const hit = body ? undefined : messageCache.get(cacheKey(user, t.meta));
            if (hit) {
              t.content = hit.header;
              return;
            }
            try {
              t.content = await mb.read(t.meta.uid);
              messageCache.fill(cacheKey(user, t.meta), t.content);
            } catch (err) {
              if (!(err instanceof StoreError && err.code === "EXPUNGED")) throw err;
            }
          }),
        );
      }
      for (const t of batch) {
        if (content && !t.content) continue;
        if (match(t)) hits.push({ seq: t.seq, uid: t.meta.uid, modseq: t.meta.modseq });
        delete t.content;
      }
    }
    const ids = hits.map((h) => (call.uid ? h.uid : h.seq));
    const modseq = usesModseq(a.key) ? hits.reduce((m, h) => Math.max(m, h.modseq), 0) : 0;
    if (usesModseq(a.key)) s.condstore = true;
    if (a.ret) {
      let line = `* ESEARCH (TAG "${call.tag}")${call.uid ? " UID" : ""}`;
      if (ids.length > 0) {
        if (a.ret.includes("MIN")) line += ` MIN ${ids[0]}`;
        if (a.ret.includes("MAX")) line += ` MAX ${ids[ids.length - 1]}`;
        if (a.ret.includes("ALL")) line += ` ALL ${formatSequenceSet(ids)}`;
      }
      if (a.ret.includes("COUNT")) line += ` COUNT ${ids.length}`;
      if (modseq > 0) line += ` MODSEQ ${modseq}`;
      s.writeLine(line);
    } else {
      s.writeLine(`* SEARCH${ids.map((n) => ` ${n}`).join("")}${modseq > 0 ? ` (MODSEQ ${modseq})` : ""}`);
    }
    return undefined;
  },
});
