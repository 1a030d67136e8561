/**
 * The shape of every command: which states allow it, how its arguments
 * parse (tokens → typed value, ArgumentError → BAD), and a handler that talks
 * to the session and the storage interface only.
 */
import type { Session } from "../session.js";
import type { Args } from "../wire/args.js";

/** RFC 3501 §3. */
export type State = "not-authenticated" | "authenticated" | "selected" | "logout";

export const ANY: readonly State[] = ["not-authenticated", "authenticated", "selected"];
export const AUTHENTICATED: readonly State[] = ["authenticated", "selected"];
export const SELECTED: readonly State[] = ["selected"];
export const NOT_AUTHENTICATED: readonly State[] = ["not-authenticated"];

export interface Call {
  tag: string;
  /** Command name as the table knows it ("FETCH" also for UID FETCH). */
  name: string;
  /** UID variant (RFC 3501 §6.4.8). */
  uid: boolean;
}

export interface CommandResult {
  code?: string;
  text?: string;
  /** Runs once the tagged OK is on the wire (STARTTLS, COMPRESS, LOGOUT). */
  after?: () => void;
}

export interface Command<T> {
  states: readonly State[];
  /** Accepts the UID prefix. */
  uid?: boolean;
  /**
   * RFC 3501 §7.4.1: no untagged EXPUNGE while FETCH, STORE or SEARCH run
   * (their UID forms are exempt); updates wait for the next command.
   */
  holdExpunges?: boolean;
  /** Always look for mailbox changes after this command (NOOP, CHECK: RFC 3501 §6.1.2). */
  forceSync?: boolean;
  parse(args: Args, call: Call, session: Session): T;
  handler(session: Session, args: T, call: Call): Promise<CommandResult | undefined>;
}

// biome-ignore lint/suspicious/noExplicitAny: the table holds commands of every argument type
export type AnyCommand = Command<any>;

export function command<T>(c: Command<T>): Command<T> {
  return c;
}

/**
 * A command whose one argument is a mailbox name (RFC 3501 §9 `mailbox`),
 * allowed once authenticated: DELETE, SUBSCRIBE, UNSUBSCRIBE, GETQUOTAROOT.
 */
export function mailboxCommand(
  handler: (session: Session, mailbox: string) => Promise<void>,
): Command<string> {
  return {
    states: AUTHENTICATED,
    parse(args) {
      const mailbox = args.mailbox();
      args.end();
      return mailbox;
    },
    async handler(session, mailbox) {
      await handler(session, mailbox);
      return undefined;
    },
  };
}
