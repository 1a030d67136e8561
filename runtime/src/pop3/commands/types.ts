import type { Pop3Session, Pop3State } from "../session.js";
import type { ParsedCommand } from "../wire.js";

/** One POP3 command: where it is allowed, how many arguments, and what it does. */
export interface Pop3Command {
  name: string;
  states: readonly Pop3State[];
  minArgs: number;
  maxArgs: number;
  handle(session: Pop3Session, command: ParsedCommand): Promise<void>;
}
