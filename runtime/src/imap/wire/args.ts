/**
 * Typed argument readers over the parser's tokens (RFC 3501 §9 names):
 * each command file pulls its arguments through these and gets a BAD-worthy
 * ArgumentError with a useful text when something is off.
 */
import type { AtomNode, ListNode, Node } from "./parser.js";
import { parseSequenceSet, type SeqRange, SequenceError } from "./sequence.js";
import { decodeMailboxName, Utf7Error } from "./utf7.js";

export class ArgumentError extends Error {}

export class Args {
  private i = 0;
  constructor(
    private readonly nodes: Node[],
    /** RFC 6855 / IMAP4rev2 UTF8=ACCEPT clients send UTF-8 mailbox names. */
    private readonly utf8Names = false,
  ) {}

  get remaining(): number {
    return this.nodes.length - this.i;
  }

  peek(): Node | undefined {
    return this.nodes[this.i];
  }

  next(what: string): Node {
    const n = this.nodes[this.i++];
    if (!n) throw new ArgumentError(`missing ${what}`);
    return n;
  }

  end(): void {
    if (this.i < this.nodes.length) throw new ArgumentError("too many arguments");
  }

  /** astring = 1*ASTRING-CHAR / string */
  astring(what: string): string {
    return this.astringBytes(what).toString("utf8");
  }

  astringBytes(what: string): Buffer {
    const n = this.next(what);
    if (n.type === "string") return n.value;
    if (n.type === "atom" && !n.section) return Buffer.from(n.value, "utf8");
    throw new ArgumentError(`expected ${what}`);
  }

  /** A word such as a command keyword; upper-cased. */
  atom(what: string): string {
    const n = this.next(what);
    if (n.type !== "atom" || n.section) throw new ArgumentError(`expected ${what}`);
    return n.value.toUpperCase();
  }

  atomNode(what: string): AtomNode {
    const n = this.next(what);
    if (n.type !== "atom") throw new ArgumentError(`expected ${what}`);
    return n;
  }

  list(what: string): ListNode {
    const n = this.next(what);
    if (n.type !== "list") throw new ArgumentError(`expected a parenthesized ${what}`);
    return n;
  }

  number(what: string): number {
    const n = this.next(what);
    if (n.type !== "atom" || !/^\d{1,20}$/.test(n.value))
      throw new ArgumentError(`expected a number for ${what}`);
    return Number(n.value);
  }

  sequenceSet(what = "sequence set"): SeqRange[] {
    const n = this.next(what);
    if (n.type !== "atom") throw new ArgumentError(`expected a ${what}`);
    try {
      return parseSequenceSet(n.value);
    } catch (err) {
      if (err instanceof SequenceError) throw new ArgumentError(`${err.message}: ${n.value.slice(0, 40)}`);
      throw err;
    }
  }

  /** mailbox = "INBOX" / astring, modified UTF-7 decoded (RFC 3501 §5.1). */
  mailbox(what = "mailbox name"): string {
    return mailboxName(this.astring(what), this.utf8Names);
  }
}

export function mailboxName(raw: string, utf8 = false): string {
  let name: string;
  try {
    name = utf8 ? raw : decodeMailboxName(raw);
  } catch (err) {
    if (err instanceof Utf7Error) throw new ArgumentError(`invalid mailbox name: ${err.message}`);
    throw err;
  }
  // RFC 3501 §5.1: INBOX is case-insensitive
  if (name.toUpperCase() === "INBOX") return "INBOX";
  if (/^INBOX\//i.test(name)) return `INBOX${name.slice(5)}`;
  return name;
}

/** A string value of a list item (flags, header names). */
export function nodeText(n: Node): string {
  if (n.type === "string") return n.value.toString("utf8");
  if (n.type === "atom") return n.value;
  throw new ArgumentError("unexpected list");
}
