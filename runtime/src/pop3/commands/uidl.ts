// RFC 1939 §7 UIDL [msg]: the store's GUID, stable across sessions, restarts and failover.
import { listingCommand } from "./message.js";

export const UIDL = listingCommand(
  "UIDL",
  () => "+OK",
  (m) => m.meta.guid,
);
