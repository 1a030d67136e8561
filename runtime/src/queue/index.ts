/**
 * The durable queue: store on disk + delivery workers. smtp/ opens one per
 * host: the full queue (store + runner) in the process that delivers, and in
 * each acceptor process of `serve smtp` with smtp.workers > 1 an acceptor
 * queue (store only) that tells the delivering process about each message.
 */
import type { Logger } from "pino";
import { type QueueConfig, QueueRunner } from "./runner.js";
import { QueueStore } from "./store.js";
import type { EnqueueRequest, QueuedEnvelope, Router } from "./types.js";

export type { QueueConfig } from "./runner.js";
export { backoffSeconds, QueueRunner } from "./runner.js";
export { QueueStore } from "./store.js";
export type { EnqueueRequest, QueuedEnvelope, QueuedRecipient, Route, Router } from "./types.js";

export interface Queue {
  /** Resolves once message and envelope are fsynced: only then may the server say 250. */
  enqueue(message: Buffer, request: EnqueueRequest): Promise<QueuedEnvelope>;
  flush(): Promise<void>;
  drain(timeoutMs: number): Promise<void>;
  /** Messages queued and not yet done (metrics). */
  size(): number;
  /**
   * A message committed by another process (an acceptor): deliver it now.
   * With `message`, the first attempt needs no read of the queue file.
   */
  notify(envelope: QueuedEnvelope, message?: Buffer): void;
  readonly store: QueueStore;
}

export async function openQueue(options: {
  config: QueueConfig;
  hostname: string;
  router: Router;
  logger: Logger;
  dnsServers?: string[];
  onDelivery?: (transport: "lmtp" | "smtp", status: string) => void;
}): Promise<Queue> {
  const store = new QueueStore(options.config.dir);
  const runner = new QueueRunner({ ...options, store });
  await runner.start();
  return {
    store,
    async enqueue(message, request) {
      const envelope = await store.enqueue(message, request);
      // The first attempt starts from these bytes instead of reading the file back.
      runner.notify(envelope, message);
      return envelope;
    },
    flush: () => runner.flush(),
    drain: (timeoutMs) => runner.drain(timeoutMs),
    size: () => runner.size(),
    notify: (envelope, message) => runner.notify(envelope, message),
  };
}

/**
 * The queue as an acceptor process sees it: enqueue writes and fsyncs the
 * message exactly like the full queue (unique ids: time + 48 random bits;
 * temporary names carry the pid), then `onQueued` hands it to the one
 * process that delivers. The store must have been opened (folders made,
 * crash leftovers removed) by that process: an acceptor never cleans tmp/,
 * where the other acceptors are writing.
 */
export function openAcceptorQueue(options: {
  dir: string;
  onQueued: (envelope: QueuedEnvelope, message: Buffer) => void;
}): Queue {
  const store = new QueueStore(options.dir);
  return {
    store,
    async enqueue(message, request) {
      const envelope = await store.enqueue(message, request);
      options.onQueued(envelope, message);
      return envelope;
    },
    // Ops' `queue flush` request file is what the delivering process reads.
    flush: () => store.requestFlush(),
    drain: async () => undefined,
    size: () => 0,
    notify: () => undefined,
  };
}
