/** SUBSCRIBE and UNSUBSCRIBE (RFC 3501 §6.3.6, §6.3.7). */
import { AUTHENTICATED, command } from "./types.js";

function make(on: boolean) {
  return command({
    states: AUTHENTICATED,
    parse(args) {
      const mailbox = args.mailbox();
      args.end();
      return mailbox;
    },
    async handler(s, mailbox) {
      if (on) await s.user!.subscribe(mailbox);
      else await s.user!.unsubscribe(mailbox);
      return undefined;
    },
  });
}

export const subscribe = make(true);
export const unsubscribe = make(false);
