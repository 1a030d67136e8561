/**
 * SMTP replies with their RFC 3463 enhanced status codes, applied at the edge.
 * smtp-server picks an enhanced code from the reply code alone (451 → 4.3.0),
 * which cannot say "directory unavailable" (4.4.3) or "relay denied" (5.7.1);
 * a reply text that starts with its own enhanced code is sent as is.
 */
import { SMTPConnection } from "smtp-server/lib/smtp-connection.js";

export class SmtpReplyError extends Error {
  readonly responseCode: number;
  constructor(code: number, enhanced: string, text: string) {
    super(`${enhanced} ${text}`);
    this.name = "SmtpReplyError";
    this.responseCode = code;
  }
}

export const reply = (code: number, enhanced: string, text: string) =>
  new SmtpReplyError(code, enhanced, text);

const OWN_ENHANCED = /^[245]\.\d{1,3}\.\d{1,3} /;

type SendFn = (code: number, data?: string | string[], context?: unknown) => void;
interface Patchable {
  send: SendFn;
  _server: object;
  _useEnhancedStatusCodes(): boolean;
  __mailinfraEnhanced?: boolean;
}

let installed = false;
/** The servers whose connections pass their own codes through (the SMTP listeners, not LMTP's). */
const passthrough = new WeakSet<object>();

/**
 * For the connections of `server` only (an LMTP server in the same process
 * keeps its own handling, lmtp/server.ts); idempotent; changes nothing for
 * replies without their own enhanced code.
 */
export function installEnhancedCodePassthrough(server: object): void {
  passthrough.add(server);
  if (installed) return;
  installed = true;
  const proto = (SMTPConnection as unknown as { prototype: Patchable }).prototype;
  if (proto.__mailinfraEnhanced) return;
  proto.__mailinfraEnhanced = true;
  const original = proto.send;
  proto.send = function send(this: Patchable, code: number, data?: string | string[], context?: unknown) {
    if (typeof data === "string" && OWN_ENHANCED.test(data) && passthrough.has(this._server)) {
      const text = this._useEnhancedStatusCodes() ? data : data.replace(OWN_ENHANCED, "");
      return original.call(this, code, text, false);
    }
    return original.call(this, code, data, context);
  };
}
