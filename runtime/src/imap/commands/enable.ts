/** ENABLE (RFC 5161): CONDSTORE (RFC 7162 §3.1) is the one we know. */
import { AUTHENTICATED, command } from "./types.js";

const KNOWN = new Set(["CONDSTORE"]);

export default command({
  states: AUTHENTICATED,
  parse(args) {
    const caps: string[] = [];
    while (args.remaining > 0) caps.push(args.atom("capability"));
    if (caps.length === 0) args.next("capability");
    return caps;
  },
  async handler(s, caps) {
    const newly: string[] = [];
    for (const c of caps) {
      if (!KNOWN.has(c) || s.enabled.has(c)) continue;
      s.enabled.add(c);
      newly.push(c);
      if (c === "CONDSTORE") s.condstore = true;
    }
    s.writeLine(`* ENABLED${newly.map((c) => ` ${c}`).join("")}`);
    return undefined;
  },
});
