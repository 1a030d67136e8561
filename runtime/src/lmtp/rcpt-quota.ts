/**
 * Over-quota at RCPT, before any byte of the message is sent (Dovecot's
 * lmtp_rcpt_check_quota): a mailbox that is already full, or that the
 * announced size would overflow, is refused with 552 5.2.2 (RFC 1870 §6.1:
 * 552 for a permanent over-quota; RFC 3463 X.2.2 "mailbox full"). The MX
 * asks this at its own RCPT (smtp/quota-check.ts), so such mail is refused
 * to the sending client instead of bounced to a sender that is usually forged.
 *
 * Cheap on purpose: the store answers from the usage it keeps cached from
 * `maildirsize` (a stat per call; store/quota.ts), never a rescan per RCPT.
 * The DATA-time check in the store stays: the message may still overflow.
 */
import type { Logger } from "pino";
import type { SMTPServerSession } from "smtp-server";
import type { Account } from "../directory/types.js";
import type { MailStore } from "../store/types.js";

/** The MAIL FROM SIZE= value (RFC 1870 §3), 0 when absent or malformed. */
export function announcedSize(session: SMTPServerSession): number {
  const args = session.envelope.mailFrom ? session.envelope.mailFrom.args : false;
  const size = args ? args.SIZE : undefined;
  return typeof size === "string" && /^\d{1,20}$/.test(size) ? Number(size) : 0;
}

/** True when the account's mailbox cannot take `size` more bytes (or is at its limit already). */
export function mailboxFull(usedBytes: number, limitBytes: number, size: number): boolean {
  return usedBytes >= limitBytes || usedBytes + size > limitBytes;
}

/**
 * Whether to refuse `account` at RCPT. A store fault is never a refusal: the
 * recipient is accepted and DATA decides (451 or 552 then), so a broken disk
 * cannot turn into a permanent "mailbox full".
 */
export async function refuseForQuota(
  store: MailStore,
  account: Account,
  size: number,
  log: Logger,
): Promise<boolean> {
  try {
    // The same way delivery opens it (deliver.ts): the account's quota from the directory, else the default.
    const user = await store.open(
      account.uid,
      account.quotaBytes !== undefined ? { quotaBytes: account.quotaBytes } : {},
    );
    const quota = await user.quota();
    if (!mailboxFull(quota.usedBytes, quota.limitBytes, size)) return false;
    log.info(
      { uid: account.uid, usedBytes: quota.usedBytes, limitBytes: quota.limitBytes, size },
      "over quota at RCPT",
    );
    return true;
  } catch (err) {
    log.warn({ err, uid: account.uid }, "quota check at RCPT failed, leaving it to DATA");
    return false;
  }
}
