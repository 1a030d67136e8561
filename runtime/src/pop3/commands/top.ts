// RFC 1939 §7 TOP msg n: the header and the first n body lines, byte-stuffed.
import { StoreError } from "../../store/types.js";
import { dotStuff, topOf } from "../wire.js";
import type { Pop3Command } from "./types.js";

export const TOP: Pop3Command = {
  name: "TOP",
  states: ["TRANSACTION"],
  minArgs: 2,
  maxArgs: 2,
  async handle(s, { args }) {
    const lines = args[1] as string;
    if (!/^\d{1,9}$/.test(lines)) return s.bad("TOP needs a non-negative number of lines");
    const m = s.message(args[0]);
    if (!m) return s.err("No such message");
    let body: Buffer;
    try {
      body = await s.read(m.meta.uid);
    } catch (err) {
      if (err instanceof StoreError && err.code === "EXPUNGED")
        return s.err("Message was removed by another session");
      throw err;
    }
    await s.write(Buffer.concat([Buffer.from("+OK\r\n"), dotStuff(topOf(body, Number(lines)))]));
  },
};
