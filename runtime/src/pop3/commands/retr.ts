// RFC 1939 §5 RETR msg: the whole message, byte-stuffed (§3).
import { dotStuff } from "../wire.js";
import { sendMessage } from "./message.js";
import type { Pop3Command } from "./types.js";

export const RETR: Pop3Command = {
  name: "RETR",
  states: ["TRANSACTION"],
  minArgs: 1,
  maxArgs: 1,
  handle: (s, { args }) =>
    sendMessage(s, args[0], (body) => ({ status: `+OK ${body.length} octets`, data: dotStuff(body) })),
};
