/** Named limits of the SMTP server; each has a test in runtime/test/smtp. */

/** RFC 5321 §4.5.3.1.4 says 512 for a command line; SMTP extensions make room for more. */
export const MAX_COMMAND_LINE_BYTES = 4096;
/** RFC 5321 §4.5.3.1.6: a text line is at most 1000 octets including CRLF. */
export const MAX_TEXT_LINE_BYTES = 1000;
/** The whole header section (Postfix's header_size_limit is 102400). */
export const MAX_HEADER_BYTES = 256 * 1024;
/** Header fields in one message. */
export const MAX_HEADER_FIELDS = 1000;
/** Local parts (RFC 5321 §4.5.3.1.1) and whole addresses (§4.5.3.1.3 path). */
export const MAX_LOCAL_PART_BYTES = 64;
export const MAX_ADDRESS_BYTES = 254;
/** Time a stopping server gives sessions before closing them. */
export const DRAIN_CLOSE_MS = 30_000;
/** Reverse DNS of a client, looked up during the pause before the greeting (smtp-server waited 1.5 s). */
export const REVERSE_LOOKUP_TIMEOUT_MS = 1500;
