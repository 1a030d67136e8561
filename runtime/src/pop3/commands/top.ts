// RFC 1939 §7 TOP msg n: the header and the first n body lines, byte-stuffed.
import { dotStuff, topOf } from "../wire.js";
import { sendMessage } from "./message.js";
import type { Pop3Command } from "./types.js";

export const TOP: Pop3Command = {
  name: "TOP",
  states: ["TRANSACTION"],
  minArgs: 2,
  maxArgs: 2,
  async handle(s, { args }) {
    const lines = args[1] as string;
    if (!/^\d{1,9}$/.test(lines)) return s.bad("TOP needs a non-negative number of lines");
    await sendMessage(s, args[0], (body) => ({ status: "+OK", data: dotStuff(topOf(body, Number(lines))) }));
  },
};
