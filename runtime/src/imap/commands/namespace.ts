/** NAMESPACE (RFC 2342): one personal namespace, "/" delimited; no others. */
import { AUTHENTICATED, command } from "./types.js";

export default command({
  states: AUTHENTICATED,
  parse: (args) => args.end(),
  async handler(s) {
    s.writeLine('* NAMESPACE (("" "/")) NIL NIL');
    return undefined;
  },
});
