// RFC 1939 §7 UIDL [msg]: the store's GUID, stable across sessions, restarts and failover.
import { sendListing } from "./message.js";
import type { Pop3Command } from "./types.js";

export const UIDL: Pop3Command = {
  name: "UIDL",
  states: ["TRANSACTION"],
  minArgs: 0,
  maxArgs: 1,
  handle: (s, { args }) =>
    sendListing(
      s,
      args,
      () => "+OK",
      (m) => m.meta.guid,
    ),
};
