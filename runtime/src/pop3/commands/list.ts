// RFC 1939 §5 LIST [msg]
import { sendListing } from "./message.js";
import type { Pop3Command } from "./types.js";

export const LIST: Pop3Command = {
  name: "LIST",
  states: ["TRANSACTION"],
  minArgs: 0,
  maxArgs: 1,
  handle: (s, { args }) =>
    sendListing(
      s,
      args,
      (n) => `+OK ${n} messages`,
      (m) => m.meta.size,
    ),
};
