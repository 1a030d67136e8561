/** The durable queue: store on disk + delivery workers. smtp/ creates one per process. */
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
  };
}
