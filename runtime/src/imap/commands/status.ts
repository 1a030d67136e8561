/** STATUS (RFC 3501 §6.3.10; HIGHESTMODSEQ RFC 7162 §3.1.4; SIZE RFC 8438). */
import type { MailboxStatus } from "../../store/types.js";
import type { Session } from "../session.js";
import { ArgumentError, nodeText } from "../wire/args.js";
import { compile, type Value } from "../wire/compiler.js";
import type { Node } from "../wire/parser.js";
import { encodeMailboxName } from "../wire/utf7.js";
import { AUTHENTICATED, command } from "./types.js";

const ITEMS: Record<string, (st: MailboxStatus) => number> = {
  MESSAGES: (st) => st.messages,
  RECENT: (st) => st.recent,
  UIDNEXT: (st) => st.uidNext,
  UIDVALIDITY: (st) => st.uidValidity,
  UNSEEN: (st) => st.unseen,
  HIGHESTMODSEQ: (st) => st.highestModseq,
  SIZE: (st) => st.size,
};

export function parseStatusItems(nodes: Node[]): string[] {
  const items = nodes.map((n) => nodeText(n).toUpperCase());
  if (items.length === 0) throw new ArgumentError("empty status item list");
  for (const i of items) if (!(i in ITEMS)) throw new ArgumentError(`unknown status item ${i.slice(0, 30)}`);
  return items;
}

export async function sendStatus(s: Session, mailbox: string, items: string[]): Promise<void> {
  const st = await s.user!.status(mailbox);
  const values: Value[] = [];
  for (const i of items) values.push({ atom: i }, ITEMS[i]!(st));
  if (items.includes("HIGHESTMODSEQ")) s.condstore = true;
  s.write(
    Buffer.from(`* STATUS ${compile([encodeMailboxName(mailbox), values]).toString("latin1")}\r\n`, "latin1"),
  );
}

export default command({
  states: AUTHENTICATED,
  parse(args) {
    const mailbox = args.mailbox();
    const items = parseStatusItems(args.list("status items").items);
    args.end();
    return { mailbox, items };
  },
  async handler(s, a) {
    await sendStatus(s, a.mailbox, a.items);
    return undefined;
  },
});
