/** CAPABILITY (RFC 3501 §6.1.1). */
import { ANY, command } from "./types.js";

export default command({
  states: ANY,
  parse: (args) => args.end(),
  async handler(s) {
    s.writeLine(`* CAPABILITY ${s.capabilities().join(" ")}`);
    return undefined;
  },
});
