// RFC 1939 §5 LIST [msg]: the size of each message in octets.
import { listingCommand } from "./message.js";

export const LIST = listingCommand(
  "LIST",
  (n) => `+OK ${n} messages`,
  (m) => m.meta.size,
);
