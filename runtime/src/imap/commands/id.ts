/** ID (RFC 2971): the client's parameters are logged; ours are name and version. */
import { ArgumentError, nodeText } from "../wire/args.js";
import { ANY, command } from "./types.js";

/** RFC 2971 §3.3: at most 30 field/value pairs. */
const MAX_ID_PAIRS = 30;

export default command({
  states: ANY,
  parse(args) {
    const n = args.next("ID parameter list");
    args.end();
    if (n.type === "atom" && n.value.toUpperCase() === "NIL") return {};
    if (n.type !== "list") throw new ArgumentError("expected a parameter list or NIL");
    if (n.items.length % 2 !== 0 || n.items.length > 2 * MAX_ID_PAIRS)
      throw new ArgumentError("invalid ID parameter list");
    const out: Record<string, string> = {};
    for (let i = 0; i < n.items.length; i += 2)
      out[nodeText(n.items[i]!).slice(0, 30)] = nodeText(n.items[i + 1]!).slice(0, 1024);
    return out;
  },
  async handler(s, params) {
    if (Object.keys(params).length > 0) s.log.info({ client: params }, "client id");
    s.untagged([{ atom: "ID" }, ["name", "mailinfra", "vendor", "mailinfra", "version", "0.1.0"]]);
    return undefined;
  },
});
