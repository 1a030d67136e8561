/**
 * FETCH and UID FETCH (RFC 3501 §6.4.5, §7.4.2): macros, ENVELOPE,
 * BODYSTRUCTURE, BODY[section]<partial>, BODY.PEEK, RFC822.*, and CONDSTORE's
 * MODSEQ item and CHANGEDSINCE modifier (RFC 7162 §3.1.4).
 */
import type { MessageMeta } from "../../store/types.js";
import { StoreError } from "../../store/types.js";
import { no } from "../errors.js";
import { type CachedMessage, cacheKey, messageCache } from "../mime/cache.js";
import { applyPartial, type SectionSpec, sectionBytes } from "../mime/section.js";
import { type MimePart, parseMime } from "../mime/structure.js";
import type { Session } from "../session.js";
import { ArgumentError, nodeText } from "../wire/args.js";
import { compile, type Value } from "../wire/compiler.js";
import { isAtom } from "../wire/formal-syntax.js";
import type { AtomNode, Node } from "../wire/parser.js";
import { formatDateTime, resolveSet } from "./helpers.js";
import { command, SELECTED } from "./types.js";

type Item =
  | { k: "simple"; name: "UID" | "FLAGS" | "INTERNALDATE" | "RFC822.SIZE" | "MODSEQ" }
  | { k: "envelope" }
  | { k: "structure"; extended: boolean }
  | {
      k: "section";
      label: string;
      spec: SectionSpec;
      partial?: { start: number; length: number };
      peek: boolean;
    };

const MACROS: Record<string, string[]> = {
  ALL: ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"],
  FAST: ["FLAGS", "INTERNALDATE", "RFC822.SIZE"],
  FULL: ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"],
};

/** How many messages are read ahead while responses are written. */
const READ_AHEAD = 8;

export function parseSection(nodes: Node[]): { spec: SectionSpec; text: string } {
  if (nodes.length === 0) return { spec: { path: [], specifier: "", fields: [] }, text: "" };
  const first = nodes[0]!;
  if (first.type !== "atom") throw new ArgumentError("invalid section");
  const parts = first.value.toUpperCase().split(".");
  const path: number[] = [];
  while (parts.length > 0 && /^\d+$/.test(parts[0]!)) {
    const n = Number(parts.shift());
    if (n < 1) throw new ArgumentError("section numbers start at 1");
    path.push(n);
  }
  const specifier = parts.join(".");
  const allowed = ["", "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"];
  if (!allowed.includes(specifier)) throw new ArgumentError(`invalid section ${first.value.slice(0, 40)}`);
  if (specifier === "MIME" && path.length === 0) throw new ArgumentError("MIME needs a part number");
  let fields: string[] = [];
  let text = [...path.map(String), ...(specifier ? [specifier] : [])].join(".");
  if (specifier.startsWith("HEADER.FIELDS")) {
    const list = nodes[1];
    if (list?.type !== "list" || list.items.length === 0)
      throw new ArgumentError("HEADER.FIELDS needs a list of field names");
    fields = list.items.map((n) => nodeText(n).toUpperCase());
    text += ` (${fields.map((f) => (isAtom(f) ? f : compile([f]).toString("latin1"))).join(" ")})`;
    if (nodes.length > 2) throw new ArgumentError("invalid section");
  } else if (nodes.length > 1) throw new ArgumentError("invalid section");
  return { spec: { path, specifier: specifier as SectionSpec["specifier"], fields }, text };
}

function parseItem(n: Node): Item[] {
  if (n.type !== "atom") throw new ArgumentError("invalid fetch attribute");
  const name = n.value.toUpperCase();
  const macro = MACROS[name];
  if (macro && !n.section) return macro.flatMap((m) => parseItem({ type: "atom", value: m }));
  if (n.section) return [sectionItem(n, name)];
  switch (name) {
    case "UID":
    case "FLAGS":
    case "INTERNALDATE":
    case "RFC822.SIZE":
    case "MODSEQ":
      return [{ k: "simple", name }];
    case "ENVELOPE":
      return [{ k: "envelope" }];
    case "BODYSTRUCTURE":
      return [{ k: "structure", extended: true }];
    case "BODY":
      return [{ k: "structure", extended: false }];
    case "RFC822":
      return [{ k: "section", label: "RFC822", spec: { path: [], specifier: "", fields: [] }, peek: false }];
    case "RFC822.HEADER":
      return [
        {
          k: "section",
          label: "RFC822.HEADER",
          spec: { path: [], specifier: "HEADER", fields: [] },
          peek: true,
        },
      ];
    case "RFC822.TEXT":
      return [
        {
          k: "section",
          label: "RFC822.TEXT",
          spec: { path: [], specifier: "TEXT", fields: [] },
          peek: false,
        },
      ];
    default:
      throw new ArgumentError(`unknown fetch attribute ${name.slice(0, 30)}`);
  }
}

function sectionItem(n: AtomNode, name: string): Item {
  if (name !== "BODY" && name !== "BODY.PEEK")
    throw new ArgumentError(`unknown fetch attribute ${name.slice(0, 30)}`);
  const { spec, text } = parseSection(n.section ?? []);
  const item: Item = { k: "section", label: `BODY[${text}]`, spec, peek: name === "BODY.PEEK" };
  if (n.partial) item.partial = n.partial;
  return item;
}

interface FetchArgs {
  set: ReturnType<import("../wire/args.js").Args["sequenceSet"]>;
  items: Item[];
  changedSince: number | undefined;
}

export default command<FetchArgs>({
  states: SELECTED,
  uid: true,
  holdExpunges: true,
  parse(args, call) {
    const set = args.sequenceSet(call.uid ? "UID set" : "sequence set");
    const what = args.next("fetch attributes");
    const items = what.type === "list" ? what.items.flatMap(parseItem) : parseItem(what);
    if (items.length === 0) throw new ArgumentError("empty fetch attribute list");
    let changedSince: number | undefined;
    if (args.remaining > 0) {
      const mods = args.list("fetch modifiers").items;
      for (let i = 0; i < mods.length; i += 2) {
        if (nodeText(mods[i]!).toUpperCase() !== "CHANGEDSINCE")
          throw new ArgumentError("unknown FETCH modifier");
        const v = mods[i + 1];
        if (v?.type !== "atom" || !/^\d{1,20}$/.test(v.value))
          throw new ArgumentError("CHANGEDSINCE needs a number");
        changedSince = Number(v.value);
      }
    }
    args.end();
    // RFC 3501 §6.4.8: UID FETCH always returns UID
    if (call.uid && !items.some((i) => i.k === "simple" && i.name === "UID"))
      items.unshift({ k: "simple", name: "UID" });
    if (changedSince !== undefined && !items.some((i) => i.k === "simple" && i.name === "MODSEQ"))
      items.push({ k: "simple", name: "MODSEQ" });
    return { set, items, changedSince };
  },
  async handler(s, a, call) {
    const mb = s.mailbox!;
    if (a.changedSince !== undefined || a.items.some((i) => i.k === "simple" && i.name === "MODSEQ"))
      s.condstore = true;
    let targets = resolveSet(s, a.set, call.uid);
    if (a.changedSince !== undefined) targets = targets.filter((t) => t.meta.modseq > a.changedSince!);
    const setsSeen = !mb.readOnly && a.items.some((i) => i.k === "section" && !i.peek);
    const seenNow = new Set<number>();
    if (setsSeen) {
      const unseen = targets.filter((t) => !t.meta.flags.has("\\Seen")).map((t) => t.meta.uid);
      if (unseen.length > 0) {
        const r = await mb.setFlags(unseen, "add", ["\\Seen"]);
        for (const m of r.changed) seenNow.add(m.uid);
      }
    }
    const current = seenNow.size > 0 ? new Map(mb.messages().map((m) => [m.uid, m])) : undefined;
    // the message cache answers ENVELOPE, BODYSTRUCTURE and top-level header sections without a read
    const user = s.user!.user;
    const cached = targets.map((t) => messageCache.get(cacheKey(user, t.meta)));
    const needs = targets.map((_, i) => needsContent(a.items, cached[i]));
    let missing = 0;
    const reads: Array<Promise<Buffer | null>> = [];
    const load = (i: number): Promise<Buffer | null> =>
      needs[i]
        ? mb.read(targets[i]!.meta.uid).catch((err: unknown) => {
            if (err instanceof StoreError && err.code === "EXPUNGED") return null;
            throw err;
          })
        : Promise.resolve(null);
    for (let i = 0; i < Math.min(READ_AHEAD, targets.length); i++) reads.push(load(i));
    for (let i = 0; i < targets.length; i++) {
      const t = targets[i]!;
      const content = await reads[i]!;
      if (i + READ_AHEAD < targets.length) reads.push(load(i + READ_AHEAD));
      if (needs[i] && !content) {
        missing++;
        continue;
      }
      const meta = current?.get(t.meta.uid) ?? t.meta;
      s.write(fetchResponse(s, t.seq, meta, a.items, content, cached[i], seenNow.has(t.meta.uid)));
    }
    // RFC 2180 §4.1.2: messages expunged elsewhere are left out, with a NO
    if (missing > 0) throw no("Some of the requested messages no longer exist", "EXPUNGEISSUED");
    return undefined;
  },
});

/** Header-only sections of the message itself can be cut from the cached header block. */
function headerOnly(item: Item): boolean {
  return (
    item.k === "section" &&
    item.spec.path.length === 0 &&
    (item.spec.specifier === "HEADER" || item.spec.specifier.startsWith("HEADER.FIELDS"))
  );
}

function needsContent(items: Item[], cached: CachedMessage | undefined): boolean {
  for (const item of items) {
    if (item.k === "simple") continue;
    if (!cached) return true;
    if (item.k === "section" && !headerOnly(item)) return true;
  }
  return false;
}

function fetchResponse(
  s: Session,
  seq: number,
  meta: MessageMeta,
  items: Item[],
  content: Buffer | null,
  cachedEntry: CachedMessage | undefined,
  flagsChanged: boolean,
): Buffer {
  const values: Value[] = [];
  let mime: MimePart | undefined;
  const root = (): MimePart => {
    mime ??= parseMime(content!);
    return mime;
  };
  let entry = cachedEntry;
  const cached = (): CachedMessage => {
    entry ??= messageCache.fill(cacheKey(s.user!.user, meta), content!, root());
    return entry;
  };
  let headerRoot: MimePart | undefined;
  let sentFlags = false;
  for (const item of items) {
    switch (item.k) {
      case "simple":
        if (item.name === "UID") values.push({ atom: "UID" }, meta.uid);
        else if (item.name === "FLAGS") {
          values.push({ atom: "FLAGS" }, s.flagList(meta.flags, meta.uid));
          sentFlags = true;
        } else if (item.name === "INTERNALDATE")
          values.push({ atom: "INTERNALDATE" }, formatDateTime(meta.internalDate));
        else if (item.name === "RFC822.SIZE") values.push({ atom: "RFC822.SIZE" }, meta.size);
        else values.push({ atom: "MODSEQ" }, [meta.modseq]);
        break;
      case "envelope":
        values.push({ atom: "ENVELOPE" }, { raw: cached().envelope });
        break;
      case "structure":
        values.push(
          { atom: item.extended ? "BODYSTRUCTURE" : "BODY" },
          { raw: item.extended ? cached().bodyStructure : cached().body },
        );
        break;
      case "section": {
        let whole: Buffer;
        if (!content && headerOnly(item)) {
          const header = cached().header;
          headerRoot ??= parseMime(header);
          whole = sectionBytes(header, item.spec, headerRoot);
        } else whole = sectionBytes(content!, item.spec, root());
        const bytes = applyPartial(whole, item.partial);
        const label = item.partial ? `${item.label}<${item.partial.start}>` : item.label;
        values.push({ atom: label }, { literal: bytes });
        break;
      }
    }
  }
  // RFC 3501 §6.4.5: an implicit \Seen change is reported with the FETCH
  if (flagsChanged && !sentFlags) values.push({ atom: "FLAGS" }, s.flagList(meta.flags, meta.uid));
  return Buffer.concat([Buffer.from(`* ${seq} FETCH `), compile([values]), Buffer.from("\r\n")]);
}
