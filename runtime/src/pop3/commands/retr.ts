// RFC 1939 §5 RETR msg: the whole message, byte-stuffed (§3).
import { StoreError } from "../../store/types.js";
import { dotStuff } from "../wire.js";
import type { Pop3Command } from "./types.js";

export const RETR: Pop3Command = {
  name: "RETR",
  states: ["TRANSACTION"],
  minArgs: 1,
  maxArgs: 1,
  async handle(s, { args }) {
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
    await s.write(Buffer.concat([Buffer.from(`+OK ${body.length} octets\r\n`), dotStuff(body)]));
  },
};
