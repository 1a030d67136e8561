/** LOGIN userid password (RFC 3501 §6.2.3). */
import { authenticate } from "./auth.js";
import { command, NOT_AUTHENTICATED } from "./types.js";

export default command({
  states: NOT_AUTHENTICATED,
  parse(args) {
    const user = args.astring("user name");
    const password = args.astring("password");
    args.end();
    return { user, password };
  },
  handler: (s, a) => authenticate(s, a.user, a.password),
});
