/**
 * What the commands taking a msg argument share (RFC 1939 §5): the lookup of a
 * message number, reading a message the store may have lost to another
 * session, and the one-line / multi-line answer of LIST and UIDL.
 */
import { StoreError } from "../../store/types.js";
import type { Pop3Message, Pop3Session } from "../session.js";
import type { Pop3Command } from "./types.js";

/** The message `arg` names, or null once -ERR has been answered. */
export function findMessage(s: Pop3Session, arg: string | undefined): Pop3Message | null {
  const m = s.message(arg);
  if (!m) s.err("No such message");
  return m;
}

/**
 * RETR and TOP: looks `arg` up, reads the message and writes the `+OK` line
 * followed by what `render` makes of the body (already byte-stuffed).
 */
export async function sendMessage(
  s: Pop3Session,
  arg: string | undefined,
  render: (body: Buffer) => { status: string; data: Buffer },
): Promise<void> {
  const m = findMessage(s, arg);
  if (!m) return;
  let body: Buffer;
  try {
    body = await s.read(m.meta.uid);
  } catch (err) {
    if (err instanceof StoreError && err.code === "EXPUNGED")
      return s.err("Message was removed by another session");
    throw err;
  }
  const { status, data } = render(body);
  await s.write(Buffer.concat([Buffer.from(`${status}\r\n`), data]));
}

/**
 * LIST and UIDL: with `msg`, one `+OK msg value` line; without, `header` and a
 * line per message not marked deleted, ended by ".".
 */
export async function sendListing(
  s: Pop3Session,
  args: readonly string[],
  header: (count: number) => string,
  value: (m: Pop3Message) => string | number,
): Promise<void> {
  if (args.length === 1) {
    const m = findMessage(s, args[0]);
    if (m) s.ok(`${args[0]} ${value(m)}`);
    return;
  }
  const lines = s.messages.flatMap((m, i) => (m.deleted ? [] : [`${i + 1} ${value(m)}`]));
  await s.write(`${header(lines.length)}\r\n${lines.map((l) => `${l}\r\n`).join("")}.\r\n`);
}

/** LIST and UIDL: the same command but for the listing's first line and the value per message. */
export function listingCommand(
  name: string,
  header: (count: number) => string,
  value: (m: Pop3Message) => string | number,
): Pop3Command {
  return {
    name,
    states: ["TRANSACTION"],
    minArgs: 0,
    maxArgs: 1,
    handle: (s, { args }) => sendListing(s, args, header, value),
  };
}
