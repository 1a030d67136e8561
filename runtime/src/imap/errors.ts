/**
 * Errors with their protocol codes, applied at the edge (RFC 5530 response
 * codes). Internal error text never reaches a client; logs get the detail.
 */
import { StoreError, type StoreErrorCode } from "../store/types.js";
import { ArgumentError } from "./wire/args.js";

export class ImapError extends Error {
  constructor(
    readonly status: "NO" | "BAD",
    readonly text: string,
    readonly code?: string,
  ) {
    super(text);
    this.name = "ImapError";
  }
}

export const no = (text: string, code?: string): ImapError => new ImapError("NO", text, code);
export const bad = (text: string, code?: string): ImapError => new ImapError("BAD", text, code);

const STORE_CODES: Record<StoreErrorCode, [string, string]> = {
  NONEXISTENT: ["NONEXISTENT", "Mailbox does not exist"],
  ALREADYEXISTS: ["ALREADYEXISTS", "Mailbox already exists"],
  BADNAME: ["CANNOT", "Invalid mailbox name"],
  OVERQUOTA: ["OVERQUOTA", "Quota exceeded"],
  NOPERM: ["NOPERM", "Permission denied"],
  INUSE: ["INUSE", "Mailbox is in use"],
  TEMPFAIL: ["UNAVAILABLE", "Temporary failure, try again later"],
  EXPUNGED: ["EXPUNGEISSUED", "Some of the requested messages no longer exist"],
};

/** Maps anything a handler threw to a tagged response; `internal` is true for unexpected errors. */
export function toResponse(err: unknown): {
  status: "NO" | "BAD";
  code?: string;
  text: string;
  internal: boolean;
} {
  if (err instanceof ImapError) {
    return err.code === undefined
      ? { status: err.status, text: err.text, internal: false }
      : { status: err.status, code: err.code, text: err.text, internal: false };
  }
  if (err instanceof ArgumentError) return { status: "BAD", text: err.message, internal: false };
  if (err instanceof StoreError) {
    const [code, text] = STORE_CODES[err.code];
    return { status: "NO", code, text, internal: false };
  }
  return { status: "NO", code: "SERVERBUG", text: "Internal error, logged", internal: true };
}

export function storeCode(err: unknown): StoreErrorCode | undefined {
  return err instanceof StoreError ? err.code : undefined;
}
