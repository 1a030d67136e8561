/**
 * LIST and LSUB (RFC 3501 §6.3.8, §6.3.9) with LIST-EXTENDED (RFC 5258:
 * selection and return options, several patterns), CHILDREN (RFC 3348),
 * SPECIAL-USE (RFC 6154) and LIST-STATUS (RFC 5819).
 */
import type { MailboxInfo } from "../../store/types.js";
import { ArgumentError, mailboxName, nodeText } from "../wire/args.js";
import { compile } from "../wire/compiler.js";
import { encodeMailboxName } from "../wire/utf7.js";
import { parseStatusItems, sendStatus } from "./status.js";
import { AUTHENTICATED, command } from "./types.js";

const DELIM = "/";

/** "%" matches within one level, "*" across levels (RFC 3501 §6.3.8); INBOX matches case-insensitively. */
export function patternMatcher(pattern: string): (name: string) => boolean {
  let re = "";
  for (const c of pattern) {
    if (c === "*") re += ".*";
    else if (c === "%") re += "[^/]*";
    else re += c.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
  }
  const exact = new RegExp(`^${re}$`, "s");
  const folded = new RegExp(`^${re}$`, "is");
  return (name) => exact.test(name) || ((name === "INBOX" || name.startsWith("INBOX/")) && folded.test(name));
}

interface ListArgs {
  lsub: boolean;
  reference: string;
  patterns: string[];
  selSubscribed: boolean;
  selSpecialUse: boolean;
  recursiveMatch: boolean;
  retSubscribed: boolean;
  retChildren: boolean;
  retSpecialUse: boolean;
  retStatus: string[] | undefined;
  extended: boolean;
}

function make(lsub: boolean) {
  return command<ListArgs>({
    states: AUTHENTICATED,
    parse(args, _call, s) {
      const a: ListArgs = {
        lsub,
        reference: "",
        patterns: [],
        selSubscribed: lsub,
        selSpecialUse: false,
        recursiveMatch: false,
        retSubscribed: false,
        retChildren: true,
        retSpecialUse: true,
        retStatus: undefined,
        extended: false,
      };
      const utf8 = s.enabled.has("UTF8=ACCEPT");
      if (!lsub && args.peek()?.type === "list") {
        a.extended = true;
        for (const o of args.list("selection options").items) {
          const opt = nodeText(o).toUpperCase();
          if (opt === "SUBSCRIBED") a.selSubscribed = true;
          else if (opt === "SPECIAL-USE") a.selSpecialUse = true;
          else if (opt === "RECURSIVEMATCH") a.recursiveMatch = true;
          else if (opt !== "REMOTE") throw new ArgumentError(`unknown selection option ${opt.slice(0, 30)}`);
        }
        if (a.recursiveMatch && !a.selSubscribed)
          throw new ArgumentError("RECURSIVEMATCH needs another selection option");
      }
      a.reference = mailboxName(args.astring("reference"), utf8);
      const p = args.next("mailbox pattern");
      const pats = p.type === "list" ? p.items : [p];
      if (p.type === "list") a.extended = true;
      for (const n of pats) {
        if (n.type === "list") throw new ArgumentError("nested pattern list");
        a.patterns.push(n.type === "string" ? n.value.toString("utf8") : n.value);
      }
      if (!lsub && args.remaining > 0) {
        if (args.atom("RETURN") !== "RETURN") throw new ArgumentError("expected RETURN");
        a.extended = true;
        const opts = args.list("return options").items;
        for (let i = 0; i < opts.length; i++) {
          const opt = nodeText(opts[i]!).toUpperCase();
          if (opt === "SUBSCRIBED") a.retSubscribed = true;
          else if (opt === "CHILDREN") a.retChildren = true;
          else if (opt === "SPECIAL-USE") a.retSpecialUse = true;
          else if (opt === "STATUS") {
            const items = opts[++i];
            if (items?.type !== "list") throw new ArgumentError("STATUS needs a list of items");
            a.retStatus = parseStatusItems(items.items);
          } else throw new ArgumentError(`unknown return option ${opt.slice(0, 30)}`);
        }
      }
      args.end();
      return a;
    },
    async handler(s, a) {
      const verb = a.lsub ? "LSUB" : "LIST";
      // RFC 3501 §6.3.8: an empty pattern asks for the delimiter
      if (a.patterns.length === 1 && a.patterns[0] === "") {
        s.writeLine(`* ${verb} (\\Noselect) "${DELIM}" ""`);
        return undefined;
      }
      const all = await s.user!.listMailboxes();
      const byName = new Map(all.map((m) => [m.name, m]));
      const regs = a.patterns.map((p) => {
        let full = a.reference + p;
        if (a.reference && !a.reference.endsWith(DELIM) && p && !p.startsWith(DELIM))
          full = a.reference + DELIM + p;
        return patternMatcher(mailboxName(full, true));
      });
      const matches = (name: string): boolean => regs.some((r) => r(name));
      const out: Array<{ info: MailboxInfo; extra: string[] }> = [];
      for (const info of all) {
        if (!matches(info.name)) continue;
        // RFC 5258 §3: a name that does not exist is listed only when it meets the selection criteria
        if (info.nonExistent && !a.selSubscribed) continue;
        if (a.selSpecialUse && !info.specialUse) continue;
        if (a.selSubscribed && !info.subscribed) continue;
        out.push({ info, extra: [] });
      }
      // RECURSIVEMATCH / LSUB: parents of subscribed children matched only by "%" (RFC 5258 §3.5)
      if (a.selSubscribed) {
        for (const info of all) {
          if (!info.subscribed) continue;
          const parts = info.name.split(DELIM);
          for (let i = 1; i < parts.length; i++) {
            const parent = parts.slice(0, i).join(DELIM);
            if (!matches(parent)) continue;
            const listed = out.find((o) => o.info.name === parent);
            if (listed) {
              // RFC 5258 §3.5 (table) and §5 example 9: a parent that meets the
              // selection criteria itself still carries CHILDINFO
              if (a.recursiveMatch && !listed.extra.includes("CHILDINFO")) listed.extra.push("CHILDINFO");
              continue;
            }
            const p = byName.get(parent);
            if (a.lsub) {
              out.push({
                info: p
                  ? { ...p, noSelect: true }
                  : { name: parent, subscribed: false, hasChildren: true, noSelect: true },
                extra: [],
              });
            } else if (a.recursiveMatch) {
              // RFC 5258 §3.5 table: a missing parent is (\NonExistent) + CHILDINFO
              out.push({
                info: p ?? {
                  name: parent,
                  subscribed: false,
                  hasChildren: true,
                  noSelect: true,
                  nonExistent: true,
                },
                extra: ["CHILDINFO"],
              });
            }
          }
        }
      }
      out.sort((x, y) =>
        x.info.name === "INBOX" ? -1 : y.info.name === "INBOX" ? 1 : x.info.name < y.info.name ? -1 : 1,
      );
      for (const { info, extra } of out) {
        const attrs: string[] = [];
        // \NonExistent implies \Noselect (RFC 5258 §3); in LSUB a subscribed name gets neither,
        // since there \Noselect means "not subscribed itself" (RFC 3501 §6.3.9)
        if (info.nonExistent) {
          if (!a.lsub) attrs.push("\\NonExistent");
        } else {
          if (info.noSelect) attrs.push("\\Noselect");
          if (!a.lsub && a.retChildren) attrs.push(info.hasChildren ? "\\HasChildren" : "\\HasNoChildren");
        }
        if ((a.retSubscribed || (a.selSubscribed && !a.lsub)) && info.subscribed) attrs.push("\\Subscribed");
        if (a.retSpecialUse && info.specialUse) attrs.push(info.specialUse);
        const tail = extra.includes("CHILDINFO") ? ' ("CHILDINFO" ("SUBSCRIBED"))' : "";
        const name = compile([encodeMailboxName(info.name)]).toString("latin1");
        s.writeLine(`* ${verb} (${attrs.join(" ")}) "${DELIM}" ${name}${tail}`);
        if (a.retStatus && !info.noSelect) await sendStatus(s, info.name, a.retStatus);
      }
      return undefined;
    },
  });
}

export const list = make(false);
export const lsub = make(true);
