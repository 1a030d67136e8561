/** COMPRESS DEFLATE (RFC 4978): raw DEFLATE both ways from after the tagged OK. */
import { bad, no } from "../errors.js";
import { AUTHENTICATED, command } from "./types.js";

export default command({
  states: AUTHENTICATED,
  parse(args) {
    const mech = args.atom("compression mechanism");
    args.end();
    return mech;
  },
  async handler(s, mech) {
    if (mech !== "DEFLATE") throw bad("Unknown compression mechanism");
    // RFC 4978 §3: a second COMPRESS gets NO [COMPRESSIONACTIVE]
    if (s.compressed) throw no("Compression is already active", "COMPRESSIONACTIVE");
    return { text: "DEFLATE active", after: () => s.startCompression() };
  },
});
