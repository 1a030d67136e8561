/**
 * Where delivery asks "what should happen to this message for this account?".
 * The Sieve issue plugs its interpreter in here: like Stalwart's, it yields
 * actions and does no I/O; deliver.ts carries them out. Until then every
 * message is kept in INBOX (RFC 5228 §2.10.2 implicit keep).
 */
import type { Account } from "../directory/types.js";

export type DeliveryAction =
  /** RFC 5228 §4.3: store in INBOX. */
  | { type: "keep"; flags?: string[] }
  /** RFC 5228 §4.1 (+ RFC 5232 flags, RFC 5490 :create). */
  | { type: "fileinto"; mailbox: string; flags?: string[]; create?: boolean }
  /** RFC 5228 §4.4: drop silently. */
  | { type: "discard" }
  /** RFC 5228 §4.2: forward to another address. */
  | { type: "redirect"; address: string }
  /** RFC 5429: refuse with a reason (LMTP 550 5.7.1 for this recipient). */
  | { type: "reject"; reason: string };

export interface DeliveryInput {
  /** The message as it will be stored (with Return-Path, Delivered-To, Received). */
  message: Buffer;
  account: Account;
  /** The envelope: MAIL FROM ("" for bounces) and this recipient's RCPT TO address. */
  sender: string;
  recipient: string;
}

export interface DeliveryHook {
  actions(input: DeliveryInput): Promise<DeliveryAction[]>;
}

/** No script: implicit keep. */
export const keepHook: DeliveryHook = {
  async actions() {
    return [{ type: "keep" }];
  },
};
