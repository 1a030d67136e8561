/**
 * The queue directory. Layout:
 *   tmp/        files being written (removed at start: never acknowledged)
 *   msg/<id>    message bytes, CRLF, exactly as they will be delivered
 *   env/<id>.json  envelope + per-recipient state; its presence commits the message
 *   flush       ops request (`mailinfra queue flush`): retry everything now
 *
 * A message is acknowledged (250) only after both files and their directories
 * are fsynced. Removal deletes the envelope first, so a crash never leaves an
 * envelope without its message.
 */
import { randomBytes } from "node:crypto";
import { mkdir, readdir, readFile, rm, stat, unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { writeDurably } from "./durable.js";
import type { EnqueueRequest, QueuedEnvelope } from "./types.js";

const ID_PATTERN = /^[0-9a-z]{8,16}-[0-9a-f]{12}$/;

export function newQueueId(now = Date.now()): string {
  return `${now.toString(36)}-${randomBytes(6).toString("hex")}`;
}

export function isQueueId(id: string): boolean {
  return ID_PATTERN.test(id);
}

export class QueueStore {
  private tmpCounter = 0;

  constructor(readonly dir: string) {}

  private get tmpDir(): string {
    return join(this.dir, "tmp");
  }
  private get msgDir(): string {
    return join(this.dir, "msg");
  }
  private get envDir(): string {
    return join(this.dir, "env");
  }
  messagePath(id: string): string {
    return join(this.msgDir, id);
  }
  private envPath(id: string): string {
    return join(this.envDir, `${id}.json`);
  }
  private tmpPath(id: string, kind: string): string {
    this.tmpCounter += 1;
    return join(this.tmpDir, `${id}.${kind}.${process.pid}.${this.tmpCounter}`);
  }

  /**
   * Creates the folders and removes what a crash left half-done: temporary
   * files, and messages whose envelope was never committed (the client got no
   * 250 for them, so it will send again).
   */
  async open(): Promise<void> {
    for (const d of [this.dir, this.tmpDir, this.msgDir, this.envDir]) {
      await mkdir(d, { recursive: true, mode: 0o700 });
    }
    for (const name of await readdir(this.tmpDir)) {
      await rm(join(this.tmpDir, name), { force: true });
    }
    const committed = new Set(await this.ids());
    for (const name of await readdir(this.msgDir)) {
      if (!committed.has(name)) await rm(join(this.msgDir, name), { force: true });
    }
  }

  /** Writes message then envelope, each fsynced with its directory. Resolves only when both are durable. */
  async enqueue(message: Buffer, request: EnqueueRequest, now = Date.now()): Promise<QueuedEnvelope> {
    const id = request.id ?? newQueueId(now);
    const envelope: QueuedEnvelope = {
      version: 1,
      id,
      receivedAt: now,
      mailFrom: request.mailFrom,
      size: message.length,
      recipients: request.recipients.map((r) => ({ ...r, status: "pending" as const })),
      attempts: 0,
      nextAttemptAt: now,
      ...(request.dsn ? { dsn: request.dsn } : {}),
      ...(request.client ? { client: request.client } : {}),
      ...(request.hold ? { hold: true } : {}),
    };
    await writeDurably(this.tmpPath(id, "msg"), this.messagePath(id), message);
    await this.save(envelope);
    return envelope;
  }

  /** Atomically replaces the envelope (the per-recipient state is durable when this resolves). */
  async save(envelope: QueuedEnvelope): Promise<void> {
    await writeDurably(this.tmpPath(envelope.id, "env"), this.envPath(envelope.id), JSON.stringify(envelope));
  }

  /** null when the message is gone (delivered or removed by ops meanwhile). */
  async load(id: string): Promise<QueuedEnvelope | null> {
    try {
      return JSON.parse(await readFile(this.envPath(id), "utf8")) as QueuedEnvelope;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw err;
    }
  }

  async readMessage(id: string): Promise<Buffer> {
    return readFile(this.messagePath(id));
  }

  /** Committed message ids. */
  async ids(): Promise<string[]> {
    const names = await readdir(this.envDir);
    return names.filter((n) => n.endsWith(".json")).map((n) => n.slice(0, -".json".length));
  }

  /** Removes a message: envelope (the commit point) first. false when it was not there. */
  async remove(id: string): Promise<boolean> {
    if (!isQueueId(id)) return false;
    try {
      await unlink(this.envPath(id));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
      throw err;
    }
    await rm(this.messagePath(id), { force: true });
    return true;
  }

  /** Asks the running queue to retry everything now (ops). */
  async requestFlush(): Promise<void> {
    await writeFile(join(this.dir, "flush"), `${Date.now()}\n`);
  }

  /** true once per flush request. */
  async takeFlushRequest(): Promise<boolean> {
    const path = join(this.dir, "flush");
    try {
      await stat(path);
    } catch {
      return false;
    }
    await rm(path, { force: true });
    return true;
  }
}
