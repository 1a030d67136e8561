/**
 * `mailinfra queue list|show <id>|flush|remove <id>` for ops. Works on the
 * queue directory directly: `flush` leaves a request the running service picks
 * up at its next scan (queue.scanIntervalSeconds); `remove` deletes the
 * envelope (the commit point) first.
 */
import { access } from "node:fs/promises";
import { join } from "node:path";
import { QueueStore } from "./store.js";
import type { QueuedEnvelope } from "./types.js";

export const QUEUE_USAGE = "usage: mailinfra queue list | show <id> | flush | remove <id> | release <id>";

export interface QueueCommandIo {
  out(line: string): void;
  err(line: string): void;
}

function summary(env: QueuedEnvelope): string {
  const pending = env.recipients.filter((r) => r.status === "pending");
  const when = new Date(env.receivedAt).toISOString();
  const next = new Date(env.nextAttemptAt).toISOString();
  const lastReply = pending.find((r) => r.lastReply)?.lastReply ?? "";
  return [
    `${env.id}${env.hold ? " HOLD" : ""}  ${env.size} bytes  ${when}  <${env.mailFrom}>  attempts=${env.attempts}  next=${next}`,
    ...pending.map((r) => `    ${r.address}`),
    ...(lastReply ? [`    (${lastReply})`] : []),
  ].join("\n");
}

/** Returns the process exit code. */
export async function runQueueCommand(queueDir: string, args: string[], io: QueueCommandIo): Promise<number> {
  const store = new QueueStore(queueDir);
  const [verb, id] = args;
  if (verb && ["list", "show", "flush", "remove", "release"].includes(verb)) {
    try {
      await access(join(queueDir, "msg"));
    } catch {
      io.err(`no queue at ${queueDir} (queue.dir): the smtp service creates it at its first start`);
      return 1;
    }
  }
  switch (verb) {
    case "list": {
      const envelopes: QueuedEnvelope[] = [];
      for (const qid of await store.ids()) {
        const env = await store.load(qid);
        if (env) envelopes.push(env);
      }
      envelopes.sort((a, b) => a.receivedAt - b.receivedAt);
      for (const env of envelopes) io.out(summary(env));
      io.out(`-- ${envelopes.length} message(s)`);
      return 0;
    }
    case "show": {
      const env = id ? await store.load(id) : null;
      if (!id || !env) {
        io.err(id ? `no such message: ${id}` : QUEUE_USAGE);
        return 1;
      }
      io.out(JSON.stringify(env, null, 2));
      return 0;
    }
    case "flush":
      await store.requestFlush();
      io.out("flush requested");
      return 0;
    case "remove": {
      if (!id) {
        io.err(QUEUE_USAGE);
        return 1;
      }
      if (!(await store.remove(id))) {
        io.err(`no such message: ${id}`);
        return 1;
      }
      io.out(`removed ${id}`);
      return 0;
    }
    case "release": {
      const env = id ? await store.load(id) : null;
      if (!id || !env) {
        io.err(id ? `no such message: ${id}` : QUEUE_USAGE);
        return 1;
      }
      delete env.hold;
      env.nextAttemptAt = Date.now();
      await store.save(env);
      await store.requestFlush();
      io.out(`released ${id}`);
      return 0;
    }
    default:
      io.err(QUEUE_USAGE);
      return 2;
  }
}
