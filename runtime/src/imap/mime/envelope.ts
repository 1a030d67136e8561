/**
 * ENVELOPE (RFC 3501 §7.4.2): date, subject, from, sender, reply-to, to, cc,
 * bcc, in-reply-to, message-id. Sender and Reply-To default to From.
 */
import type { Value } from "../wire/compiler.js";
import { type EnvelopeAddress, parseAddressList } from "./address.js";
import { header, type MimePart } from "./structure.js";

function nstring(v: string | undefined): Value {
  return v === undefined || v === "" ? null : Buffer.from(v, "latin1");
}

function addresses(list: EnvelopeAddress[]): Value {
  if (list.length === 0) return null;
  // RFC 3501 §9: "(" 1*address ")", no SP between addresses
  return [
    {
      concat: list.map((a) => [
        nstring(a.name ?? undefined),
        nstring(a.adl ?? undefined),
        nstring(a.mailbox ?? undefined),
        nstring(a.host ?? undefined),
      ]),
    },
  ];
}

export function envelope(part: MimePart): Value {
  const get = (k: string): string | undefined => header(part, k);
  const addr = (k: string): EnvelopeAddress[] => {
    const v = get(k);
    return v === undefined ? [] : parseAddressList(v);
  };
  const from = addr("from");
  let sender = addr("sender");
  let replyTo = addr("reply-to");
  if (sender.length === 0) sender = from;
  if (replyTo.length === 0) replyTo = from;
  return [
    nstring(get("date")),
    nstring(get("subject")),
    addresses(from),
    addresses(sender),
    addresses(replyTo),
    addresses(addr("to")),
    addresses(addr("cc")),
    addresses(addr("bcc")),
    nstring(get("in-reply-to")),
    nstring(get("message-id")),
  ];
}
