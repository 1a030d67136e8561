/** The command table: verb → command record. */
import { AUTH } from "./auth.js";
import { CAPA } from "./capa.js";
import { DELE } from "./dele.js";
import { LIST } from "./list.js";
import { NOOP } from "./noop.js";
import { PASS } from "./pass.js";
import { QUIT } from "./quit.js";
import { RETR } from "./retr.js";
import { RSET } from "./rset.js";
import { STAT } from "./stat.js";
import { STLS } from "./stls.js";
import { TOP } from "./top.js";
import type { Pop3Command } from "./types.js";
import { UIDL } from "./uidl.js";
import { USER } from "./user.js";

export type { Pop3Command } from "./types.js";

export const COMMANDS: ReadonlyMap<string, Pop3Command> = new Map(
  [USER, PASS, AUTH, STLS, CAPA, STAT, LIST, RETR, TOP, DELE, RSET, NOOP, UIDL, QUIT].map((c) => [c.name, c]),
);
