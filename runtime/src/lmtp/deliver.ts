/**
 * Final delivery of one message to one account: ask the hook for actions,
 * carry them out against the MailStore, and say what to answer. Resolves only
 * after every stored copy is durable (the store fsyncs before append resolves).
 */
import type { Logger } from "pino";
import type { Account } from "../directory/types.js";
import type { MailStore } from "../store/types.js";
import { StoreError } from "../store/types.js";
import { REPLIES, type Reply, replyForError } from "./replies.js";
import type { DeliveryAction, DeliveryHook } from "./sieve-hook.js";

/** Sends a redirect on (the queue, once wired). Without one, redirect keeps the message so nothing is lost. */
export type Redirector = (address: string, message: Buffer, sender: string) => Promise<void>;

export interface DeliverInput {
  store: MailStore;
  hook: DeliveryHook;
  account: Account;
  sender: string;
  recipient: string;
  message: Buffer;
  logger: Logger;
  redirect?: Redirector;
}

export async function deliver(input: DeliverInput): Promise<Reply> {
  const { account, logger } = input;
  let actions: DeliveryAction[];
  try {
    actions = await input.hook.actions({
      message: input.message,
      account,
      sender: input.sender,
      recipient: input.recipient,
    });
  } catch (err) {
    // A broken script must not lose mail: fall back to the implicit keep (RFC 5228 §2.10.6).
    logger.warn({ err, uid: account.uid }, "delivery hook failed, keeping the message");
    actions = [{ type: "keep" }];
  }
  const reject = actions.find((a) => a.type === "reject");
  if (reject) return REPLIES.rejected(reject.reason);
  try {
    const user = await input.store.open(
      account.uid,
      account.quotaBytes !== undefined ? { quotaBytes: account.quotaBytes } : {},
    );
    for (const action of actions) {
      switch (action.type) {
        case "keep":
          await user.append("INBOX", input.message, action.flags ? { flags: action.flags } : {});
          break;
        case "fileinto":
          try {
            await user.append(action.mailbox, input.message, {
              ...(action.flags ? { flags: action.flags } : {}),
              createIfMissing: action.create ?? false,
            });
          } catch (err) {
            // RFC 5228 §4.1: a folder that cannot be used must not lose the message: keep it.
            if (!(err instanceof StoreError) || (err.code !== "NONEXISTENT" && err.code !== "BADNAME"))
              throw err;
            logger.info(
              { uid: account.uid, mailbox: action.mailbox, code: err.code },
              "fileinto failed, keeping",
            );
            await user.append("INBOX", input.message, action.flags ? { flags: action.flags } : {});
          }
          break;
        case "redirect":
          if (input.redirect) await input.redirect(action.address, input.message, input.sender);
          else {
            logger.warn({ uid: account.uid }, "no redirect transport configured, keeping the message");
            await user.append("INBOX", input.message);
          }
          break;
        case "discard":
          break;
        case "reject":
          break;
        default: {
          const never: never = action;
          throw new Error(`unknown delivery action ${JSON.stringify(never)}`);
        }
      }
    }
    return REPLIES.delivered;
  } catch (err) {
    const reply = replyForError(err);
    if (reply.code >= 451 && reply.code < 500) logger.error({ err, uid: account.uid }, "delivery failed");
    else logger.info({ uid: account.uid, code: reply.code }, "delivery refused");
    return reply;
  }
}
