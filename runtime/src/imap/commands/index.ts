/** The command table: verb → command record (UID variants share their record). */
import append from "./append.js";
import authenticate from "./authenticate.js";
import capability from "./capability.js";
import check from "./check.js";
import close from "./close.js";
import compress from "./compress.js";
import { copy, move } from "./copy.js";
import create from "./create.js";
import del from "./delete.js";
import enable from "./enable.js";
import expunge from "./expunge.js";
import fetch from "./fetch.js";
import id from "./id.js";
import idle from "./idle.js";
import { list, lsub } from "./list.js";
import login from "./login.js";
import logout from "./logout.js";
import namespace from "./namespace.js";
import noop from "./noop.js";
import { getquota, getquotaroot, setquota } from "./quota.js";
import rename from "./rename.js";
import search from "./search.js";
import { examine, select } from "./select.js";
import starttls from "./starttls.js";
import status from "./status.js";
import store from "./store.js";
import { subscribe, unsubscribe } from "./subscribe.js";
import type { AnyCommand } from "./types.js";
import unselect from "./unselect.js";

export const TABLE: ReadonlyMap<string, AnyCommand> = new Map<string, AnyCommand>([
  ["CAPABILITY", capability],
  ["NOOP", noop],
  ["LOGOUT", logout],
  ["STARTTLS", starttls],
  ["AUTHENTICATE", authenticate],
  ["LOGIN", login],
  ["ID", id],
  ["ENABLE", enable],
  ["COMPRESS", compress],
  ["SELECT", select],
  ["EXAMINE", examine],
  ["CREATE", create],
  ["DELETE", del],
  ["RENAME", rename],
  ["SUBSCRIBE", subscribe],
  ["UNSUBSCRIBE", unsubscribe],
  ["LIST", list],
  ["LSUB", lsub],
  ["STATUS", status],
  ["APPEND", append],
  ["NAMESPACE", namespace],
  ["GETQUOTA", getquota],
  ["GETQUOTAROOT", getquotaroot],
  ["SETQUOTA", setquota],
  ["IDLE", idle],
  ["CHECK", check],
  ["CLOSE", close],
  ["UNSELECT", unselect],
  ["EXPUNGE", expunge],
  ["SEARCH", search],
  ["FETCH", fetch],
  ["STORE", store],
  ["COPY", copy],
  ["MOVE", move],
]);
